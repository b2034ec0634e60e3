"""Starting the stand-in: in-process for tests (`start_server`), as a background process for the
sandbox orchestrator (`spawn` / `stop`)."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import kubeconfig
from .api import Api
from .bootstrap import seed
from .ingress import Backend, IngressServer, check_backends
from .jobs import JobController
from .server import KubeHTTPServer
from .simulator import Simulator
from .store import Store
from .streams import PodStreams

PID_FILE = "kubeapi.pid"
LOG_FILE = "kubeapi.log"
STATE_FILE = "kubeapi-state.json"
KUBECONFIG = "kubeconfig"


def parse_addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host or "127.0.0.1"
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the stand-in only listens on loopback (127.0.0.0/8), not {host}")
    return host, int(port)


@dataclass(frozen=True)
class NodeOptions:
    """The node the kubelet runs pods on: a dockerd at `docker_host`; `root` holds the pods' files."""

    docker_host: str
    root: Path
    missing_images: str = "fail"  # or "simulate": a workload pod whose images the node lacks is simulated
    restart_backoff: float = 10.0  # the kubelet's first restart delay (doubles, 5 min at most)
    job_backoff: float = 10.0  # the Job controller's first delay before replacing a failed pod
    pause_image: str = "sevensa-sandbox/base:busybox"
    dns_port: int = 53


@dataclass
class ServerHandle:
    url: str
    store: Store
    api: Api
    simulator: Simulator
    kubeconfig: Path | None = None
    ingress_url: str | None = None
    kubelet: Any = None  # kubelet.Kubelet when a node runs the pods
    jobs: JobController | None = None
    dns: Any = None  # clusterdns.ClusterDNS with a node
    _servers: list[KubeHTTPServer | IngressServer] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def set_failure(self, namespace: str, name: str, reason: str | None) -> None:
        self.simulator.set_failure(namespace, name, reason)

    def stop(self) -> None:
        for srv in self._servers:
            if isinstance(srv, KubeHTTPServer):
                srv.stopping.set()  # ends open watches
            srv.shutdown()
            srv.server_close()
        self.simulator.stop()
        for part in (self.jobs, self.kubelet, self.dns):
            if part is not None:
                part.stop()
        if self.kubelet is not None:
            self.kubelet.node.close()
        for t in self._threads:
            t.join(timeout=5)


def start_server(host: str = "127.0.0.1", port: int = 0, *, ready_delay: float = 0.3,
                 state_file: Path | None = None, kubeconfig_file: Path | None = None,
                 ingress: str | None = None, failures: dict[str, str] | None = None,
                 backends: dict[str, Backend] | None = None, node: NodeOptions | None = None) -> ServerHandle:
    """Serve in background threads of this process. `port=0` picks a free port; see `.url`.

    `node` attaches a node (a private dockerd) whose kubelet runs the pods as containers, with cluster DNS on
    the pod network's gateway and pods/exec, portforward and log served (docs/kube-standin.md).

    `backends` maps "namespace/service" to a real HTTP server (host, port) in 127.0.0.0/8: the ingress
    stand-in reverse-proxies requests routed to that Service (once its workload is ready) to it.
    A backend outside 127.0.0.0/8 raises ValueError before anything starts."""
    parse_addr(f"{host}:{port}")
    checked = check_backends(backends)
    store = Store(state_file)
    httpd = KubeHTTPServer((host, port), store)
    seed(httpd.api)
    ingress_addr = parse_addr(ingress) if ingress else None
    sim = Simulator(httpd.api, ready_delay, failures, ingress_ip=ingress_addr[0] if ingress_addr else None)
    httpd.warnings = sim.warnings
    url = f"http://{host}:{httpd.server_address[1]}"
    handle = ServerHandle(url=url, store=store, api=httpd.api, simulator=sim, _servers=[httpd])
    handle.jobs = JobController(httpd.api, backoff=node.job_backoff if node else 10.0)
    if node is not None:
        from .clusterdns import ClusterDNS  # noqa: PLC0415 - only with a node (docker, dnspython)
        from .kubelet import Kubelet  # noqa: PLC0415
        from .node import Node  # noqa: PLC0415

        runtime = Node(node.docker_host)
        kubelet = Kubelet(httpd.api, runtime, node.root, missing_images=node.missing_images,
                          restart_backoff=node.restart_backoff, pause_image=node.pause_image)
        kubelet.start()  # creates the pod network, whose gateway the DNS listens on
        handle.kubelet = kubelet
        try:
            handle.dns = ClusterDNS(store, kubelet.gateway, node.dns_port)
            handle.dns.start()
        except OSError as exc:  # pods still run and reach each other by IP; names do not resolve
            logging.getLogger("migrator.sandbox.kubeapi").error(
                "cluster DNS could not listen on %s:%d (%s): pods cannot resolve Service names",
                kubelet.gateway, node.dns_port, exc)
        sim.kubelet = kubelet
    httpd.pod_streams = PodStreams(handle.kubelet)
    handle.jobs.start()
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="kubeapi", daemon=True)
    t.start()
    handle._threads.append(t)
    if ingress_addr:
        ing = IngressServer(ingress_addr, store, sim, checked)
        ing.thread.start()
        handle._servers.append(ing)
        handle._threads.append(ing.thread)
        handle.ingress_url = f"http://{ingress_addr[0]}:{ing.server_address[1]}"
    sim.start()
    if kubeconfig_file is not None:
        handle.kubeconfig = kubeconfig.write(kubeconfig_file, url)
    return handle


# -- background process for the sandbox orchestrator ------------------------------------------------------
def kubeconfig_path(dir: Path) -> Path:
    return Path(dir) / KUBECONFIG


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def spawn(dir: Path, port: int, ingress: str | None = None, *, ready_delay: float = 0.3,
          failures: dict[str, str] | None = None, backends: dict[str, Backend] | None = None,
          node: NodeOptions | None = None, timeout: float = 15.0) -> int:
    """Start `python -m migrator.sandbox.kubeapi` in the background, write `dir/kubeapi.pid`,
    and return its pid once it answers. Raises RuntimeError (with the log's tail) if it does not.
    `backends` as for `start_server` (passed as `--backend NS/SVC=HOST:PORT`; ValueError if not loopback)."""
    checked = check_backends(backends)
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "migrator.sandbox.kubeapi", "--listen", f"127.0.0.1:{port}",
           "--kubeconfig", str(kubeconfig_path(dir)), "--state-file", str(dir / STATE_FILE),
           "--ready-delay", str(ready_delay)]
    if ingress:
        cmd += ["--ingress-listen", ingress]
    for key, reason in (failures or {}).items():
        cmd += ["--fail", f"{key}={reason}"]
    for key, (bhost, bport) in checked.items():
        cmd += ["--backend", f"{key}={bhost}:{bport}"]
    if node is not None:
        cmd += ["--node-docker-host", node.docker_host, "--node-root", str(node.root),
                "--missing-images", node.missing_images, "--restart-backoff", str(node.restart_backoff),
                "--job-backoff", str(node.job_backoff), "--pause-image", node.pause_image]
    log = open(dir / LOG_FILE, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    finally:
        log.close()
    (dir / PID_FILE).write_text(f"{proc.pid}\n")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _answers(url) and kubeconfig_path(dir).exists():
            return proc.pid
        time.sleep(0.05)
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=5)
    tail = (dir / LOG_FILE).read_text(errors="replace")[-2000:]
    raise RuntimeError(f"kube API stand-in did not answer on {url} within {timeout}s:\n{tail}")


def stop(dir: Path, timeout: float = 5.0) -> bool:
    """SIGTERM the process in `dir/kubeapi.pid` and wait for it; False if nothing was running."""
    pid_file = Path(dir) / PID_FILE
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        except ChildProcessError:  # not our child: poll for its exit instead
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True
