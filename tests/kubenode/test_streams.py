"""pods/exec, pods/portforward and pods/log for real pods, with the official client and kubectl."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from migrator.sandbox.kubeapi import ServerHandle

from .conftest import KUBECTL, PYTHON, Kubectl, busybox_pod, pod_ready, wait_for

SERVER = ("import http.server\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        body = ('pod says ' + self.path).encode()\n"
          "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
          "        self.wfile.write(body)\n"
          "http.server.ThreadingHTTPServer(('127.0.0.1', 8080), H).serve_forever()\n")


# ready once the server listens on the pod's loopback (a tcpSocket probe would go to the pod IP)
LISTENING = {"exec": {"command": ["python3.11", "-c", "import socket; socket.create_connection(('127.0.0.1', 8080))"]},
             "periodSeconds": 1}


@pytest.fixture
def sleeper(core: client.CoreV1Api, ns: str) -> str:
    core.create_namespaced_pod(ns, busybox_pod("box", "exec sleep 3600"))
    wait_for(lambda: pod_ready(core, ns, "box"), what="box ready")
    return "box"


def kube_cluster(cluster: ServerHandle, tmp_path: Path) -> Any:
    from migrator.adapters.kube import KubeCluster
    from migrator.runbook.environment import TargetConfig

    return KubeCluster(TargetConfig(kubeconfig=str(cluster.kubeconfig), ingress_address="127.0.0.1"), tmp_path)


def test_exec_stdin_round_trip_exit_code_and_stderr(cluster: ServerHandle, ns: str, sleeper: str,
                                                    tmp_path: Path) -> None:
    kube = kube_cluster(cluster, tmp_path)
    payload = os.urandom(3_000_000) + b"\x00\xff end"  # binary, many frames
    st = kube.exec_stream(ns, sleeper, None, ["cat"])
    assert st.protocol == "v5.channel.k8s.io"
    for i in range(0, len(payload), 65536):
        st.write(payload[i:i + 65536])
    st.close_stdin()
    code, out = st.wait(timeout=60)
    assert code == 0 and hashlib.sha256(out).digest() == hashlib.sha256(payload).digest()
    st = kube.exec_stream(ns, sleeper, "main", ["sh", "-c", "echo out; echo err >&2; exit 3"], stdin=False)
    code, out = st.wait(timeout=20)
    assert (code, out, bytes(st.stderr)) == (3, b"out\n", b"err\n")
    kube.close()


def test_exec_errors_are_the_api_servers(core: client.CoreV1Api, ns: str, sleeper: str) -> None:
    from kubernetes.stream import stream

    with pytest.raises(client.ApiException) as info:
        stream(core.connect_get_namespaced_pod_exec, sleeper, ns, command=["true"], container="nope",
               stderr=True, stdin=False, stdout=True, tty=False)
    assert "container nope is not valid for pod box" in str(info.value.body or info.value.reason)


def test_kubectl_exec_stdin_and_exit_codes(kubectl: Kubectl, ns: str, sleeper: str) -> None:
    data = os.urandom(1_000_000)
    cp = kubectl("exec", "-i", "-n", ns, sleeper, "--", "sha256sum", input=data)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    cp = kubectl("exec", "-n", ns, sleeper, "--", "sh", "-c", "echo oops >&2; exit 5")
    assert cp.returncode == 5 and b"oops" in cp.stderr
    cp = kubectl("exec", "-n", ns, sleeper, "-c", "main", "--", "cat", "/etc/hostname")
    assert cp.stdout == b"box\n"


def test_port_forward_through_the_api(core: client.CoreV1Api, cluster: ServerHandle, ns: str, tmp_path: Path) -> None:
    pod = busybox_pod("web", "")
    pod["spec"]["containers"][0].update(image=PYTHON, command=["python3.11", "-c", SERVER],
                                        readinessProbe=LISTENING)
    core.create_namespaced_pod(ns, pod)
    wait_for(lambda: pod_ready(core, ns, "web"), what="web ready")
    kube = kube_cluster(cluster, tmp_path)
    with kube.port_forward(ns, "web", 8080) as (host, port):
        for path in ("/one", "/two"):  # a websocket per connection; the server listens on the pod's loopback only
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as resp:
                assert resp.read() == f"pod says {path}".encode()
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=1)
    kube.close()


def test_logs_follow_tail_and_container(core: client.CoreV1Api, kubectl: Kubectl, ns: str) -> None:
    core.create_namespaced_pod(ns, busybox_pod("talker", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done",
                                               restart="Never"))
    wait_for(lambda: core.read_namespaced_pod("talker", ns).status.phase != "Pending", what="talker started")
    started = time.monotonic()
    cp = kubectl("logs", "-f", "-n", ns, "talker", timeout=30)
    assert cp.stdout == b"".join(b"line %d\n" % i for i in range(1, 6)), cp.stderr
    assert time.monotonic() - started < 20  # follow ends when the container does
    assert core.read_namespaced_pod_log("talker", ns, tail_lines=2) == "line 4\nline 5\n"
    two = busybox_pod("two", "exec sleep 3600")
    two["spec"]["containers"].append({"name": "side", "image": two["spec"]["containers"][0]["image"],
                                      "command": ["sh", "-c", "echo from side; exec sleep 3600"]})
    core.create_namespaced_pod(ns, two)
    wait_for(lambda: pod_ready(core, ns, "two"), what="two ready")
    with pytest.raises(client.ApiException) as info:
        core.read_namespaced_pod_log("two", ns)
    assert info.value.status == 400 and "a container name must be specified for pod two" in info.value.body
    wait_for(lambda: core.read_namespaced_pod_log("two", ns, container="side") == "from side\n", what="side log")
    cp = kubectl("logs", "-n", ns, "two", "-c", "side")
    assert cp.stdout == b"from side\n"


def test_kubectl_port_forward(core: client.CoreV1Api, ns: str, kubectl: Kubectl) -> None:
    pod = busybox_pod("pf", "")
    pod["spec"]["containers"][0].update(image=PYTHON, command=["python3.11", "-c", SERVER],
                                        readinessProbe=LISTENING)
    core.create_namespaced_pod(ns, pod)
    wait_for(lambda: pod_ready(core, ns, "pf"), what="pf ready")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    proc = subprocess.Popen([KUBECTL, "port-forward", "-n", ns, "pod/pf", f"{local}:8080"], env=kubectl.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def answer() -> bytes | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/kubectl", timeout=5) as resp:
                    return bytes(resp.read())
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(proc.stderr.read().decode() if proc.stderr else "kubectl exited") from None
                return None

        assert wait_for(answer, timeout=20, what="kubectl port-forward") == b"pod says /kubectl"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
