"""The sandbox as a whole: ``up``, ``down`` and ``status`` over the component modules."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import bind, compose, dataplane, dockerd, envfile, images, node, openbao, seed, sshd, target_keycloak
from .layout import (
    COMPOSE_FILE,
    COMPOSE_PROJECT,
    DNS_PRIMARY_HOST,
    DNS_PRIMARY_PORT,
    DNS_SECONDARY_HOST,
    DNS_SECONDARY_PORT,
    DNS_TTL,
    DNS_ZONE,
    INGRESS_ADDRESS,
    INGRESS_PORT,
    KUBE_API_PORT,
    LOOPBACK,
    PUBLIC_HOSTS,
    SOURCE_DATABASES,
    SOURCE_OPENBAO_HOST,
    SOURCE_OPENBAO_INTERNAL_PORT,
    SOURCE_OPENBAO_PORT,
    SSH_HOST,
    SSH_PORT,
    SSH_USER,
    TARGET_APPS,
    TARGET_KEYCLOAK_PORT,
    TARGET_MYSQL_PORT,
    TARGET_PG_PORTS,
    TARGET_PG_SUPERUSER,
    TARGET_REDIS_PORT,
    TRAEFIK_HOST,
    TRAEFIK_PORT,
    TSIG_KEY_NAME,
    UPLOADS_MOUNT,
    UPLOADS_SERVICE,
    UPLOADS_VOLUME,
    VPS_ADDRESS,
    Paths,
    default_dir,
)
from .proc import (
    Log,
    SandboxError,
    alive,
    descendants,
    mounts_under,
    pid_alive,
    processes_mentioning,
    run,
    stop_pid,
    stop_pid_file,
    tcp_open,
)

Logger = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class SandboxInfo:
    """What runs in a sandbox and how to reach it. ``to_json()`` never contains a secret value."""

    dir: Path
    up: bool
    scale: int | None
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"dir": str(self.dir), "up": self.up, "scale": self.scale, "components": self.components,
                **self.facts}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str)


# --- kubeapi (built by someone else; optional until it lands) --------------------------------------

def _kube_pid_file(paths: Paths) -> Path:
    return paths.kube / "kubeapi.pid"


#: Services of the cluster whose pods are real servers on the host: the ingress stand-in proxies to them
KUBE_BACKENDS: dict[str, tuple[str, int]] = {target_keycloak.SERVICE: (LOOPBACK, TARGET_KEYCLOAK_PORT),
                                             **{svc: (LOOPBACK, port) for svc, (port, _, _) in TARGET_APPS.items()}}


def _backend_args(paths: Paths) -> list[str]:
    return [f"--backend {key}={host}:{port}" for key, (host, port) in KUBE_BACKENDS.items()] + [
        f"--node-docker-host {paths.node_docker_host}"]


def _node_options(paths: Paths) -> Any:
    from .kubeapi import NodeOptions  # noqa: PLC0415

    # The platform's own images (sevensa/*, postgres:15-alpine, ...) cannot exist here: their pods stay
    # simulated, as before; pods of the images the sandbox builds run on the node.
    return NodeOptions(paths.node_docker_host, paths.kubelet, missing_images="simulate")


def _kubeapi_up(paths: Paths, log: Log) -> Path | None:
    try:
        from .kubeapi import kubeconfig_path, spawn  # type: ignore[attr-defined]  # noqa: PLC0415
    except ImportError:
        log("kubeapi: migrator.sandbox.kubeapi not available yet, skipped")
        return None
    paths.kube.mkdir(parents=True, exist_ok=True)
    pid = pid_alive(_kube_pid_file(paths))
    if pid is not None and not all(arg in _cmdline(pid) for arg in _backend_args(paths)):
        # started by an older sandbox without the backends or the node: restart it (the cluster is kept in
        # its state file)
        log(f"kubeapi: running without ingress backends {sorted(KUBE_BACKENDS)} or the node; restarting it")
        stop_pid_file(_kube_pid_file(paths), exe_hint="kubeapi", timeout=5)
    if pid_alive(_kube_pid_file(paths)) is None:
        busy = [f"{h}:{p}" for h, p in ((LOOPBACK, KUBE_API_PORT), (INGRESS_ADDRESS, INGRESS_PORT)) if tcp_open(h, p)]
        if busy:
            log(f"kubeapi: WARNING {', '.join(busy)} taken by a process this sandbox did not start; kubeapi skipped")
            return None
        try:
            pid = spawn(paths.kube, KUBE_API_PORT, f"{INGRESS_ADDRESS}:{INGRESS_PORT}", backends=KUBE_BACKENDS,
                        node=_node_options(paths))
        except RuntimeError as exc:
            raise SandboxError(f"kubeapi did not start: {exc}") from exc
        log(f"kubeapi: up on {LOOPBACK}:{KUBE_API_PORT} (pid {pid})")
    else:
        log("kubeapi: already running")
    return Path(kubeconfig_path(paths.kube))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kubeconfig(paths: Paths) -> Path | None:
    try:
        from .kubeapi import kubeconfig_path  # type: ignore[attr-defined]  # noqa: PLC0415
    except ImportError:
        return None
    p = Path(kubeconfig_path(paths.kube))
    return p if p.exists() else None


# --- up ------------------------------------------------------------------------------------------

def _scale_file(paths: Paths) -> Path:
    return paths.root / "scale"


def up(dir: Path | None = None, scale: int = 1, log: Logger = _quiet) -> SandboxInfo:
    """Bring the whole sandbox up (idempotent: with everything up it only re-checks and reports)."""
    paths = Paths((dir or default_dir()).resolve())
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(exist_ok=True)
    started = time.monotonic()
    prev = _scale_file(paths)
    if prev.exists() and int(prev.read_text().strip() or 0) != scale:
        log(f"note: sandbox already seeded at scale {prev.read_text().strip()}; keeping it (down first to change)")
        scale = int(prev.read_text().strip())
    env = envfile.ensure(paths)
    built = threading.Event()

    def vps() -> None:
        dockerd.start(paths, log)
        try:
            images.build_all(paths, log)
        finally:
            built.set()
        compose.up(paths, log)
        with ThreadPoolExecutor(max_workers=2) as pool:
            f_seed = pool.submit(seed.seed_all, paths, scale, env, log)
            f_bao = pool.submit(openbao.source_up, paths, env, log)
            f_seed.result()
            f_bao.result()
        _scale_file(paths).write_text(f"{scale}\n")

    def cluster_node() -> None:
        built.wait(timeout=600)
        if dockerd.running(paths) is not None:
            node.up(paths, log)

    def host_side() -> None:
        node.start(paths, log)  # the kubelet in kubeapi needs its dockerd
        sshd.start(paths, log)
        bind.start(paths, log)
        dataplane.up(paths, env, log)
        target_keycloak.up(paths, env, log)
        openbao.target_up(paths, log)
        _kubeapi_up(paths, log)

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(vps), pool.submit(host_side), pool.submit(cluster_node)]
        errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err
    info = status(paths.root)
    (paths.root / "sandbox.json").write_text(info.to_json() + "\n")
    log(f"sandbox up in {time.monotonic() - started:.1f}s: {paths.root}")
    return info


# --- down ----------------------------------------------------------------------------------------

def _bridge_names(paths: Paths) -> list[str]:
    if dockerd.running(paths) is None:
        return []
    cp = run([dockerd.docker_cli(), "network", "ls", "--quiet", "--no-trunc", "--filter", "driver=bridge"],
             env=dockerd.docker_env(paths), check=False, timeout=20)
    return [f"br-{nid[:12]}" for nid in cp.stdout.decode().split()]


def _node_down(paths: Paths) -> list[str]:
    """Remove the pods' containers (the kubelet is gone with kubeapi) and stop the node; its bridges."""
    if node.running(paths) is None:
        return []
    env = node.env_for(paths.node_docker_host, paths.node)
    cp = run([dockerd.docker_cli(), "ps", "-aq"], env=env, check=False, timeout=20)
    ids = cp.stdout.decode().split()
    if ids:
        run([dockerd.docker_cli(), "rm", "-f", *ids], env=env, check=False, timeout=120)
    cp = run([dockerd.docker_cli(), "network", "ls", "--quiet", "--no-trunc", "--filter", "driver=bridge"],
             env=env, check=False, timeout=20)
    bridges = [f"br-{nid[:12]}" for nid in cp.stdout.decode().split()]
    node.stop(paths)
    return bridges


def down(dir: Path | None = None, log: Logger = _quiet) -> None:
    """Stop everything the sandbox started (by pid file), remove containers, volumes, networks and every
    file under ``dir``; unmount whatever is left mounted below it. Idempotent."""
    paths = Paths((dir or default_dir()).resolve())
    if not paths.root.exists():
        log(f"sandbox: nothing at {paths.root}")
        return
    started = time.monotonic()
    stop_pid_file(_kube_pid_file(paths), exe_hint="kubeapi", timeout=5)
    target_keycloak.down(paths)
    bridges = _bridge_names(paths)
    if dockerd.running(paths) is not None and paths.env_file.exists():
        compose.down(paths, log)
        run([dockerd.docker_cli(), "system", "prune", "--all", "--volumes", "--force"],
            env=dockerd.docker_env(paths), check=False, timeout=60)
        log(f"docker: pruned ({time.monotonic() - started:.1f}s)")
    dockerd.stop(paths)
    log(f"dockerd: stopped ({time.monotonic() - started:.1f}s)")
    node_bridges = _node_down(paths)
    log(f"node dockerd: stopped ({time.monotonic() - started:.1f}s)")
    sshd_pid = sshd.running(paths)
    sessions = descendants(sshd_pid) if sshd_pid else []
    sshd.stop(paths)
    for pid in sessions:
        stop_pid(pid, timeout=3)
    bind.stop(paths)
    dataplane.down(paths)
    openbao.target_down(paths)
    log(f"host services: stopped ({time.monotonic() - started:.1f}s)")
    # leftovers that still name the sandbox dir (containerd, shims) — ours, stopped by pid
    for pid in processes_mentioning(f"{paths.root}/"):
        stop_pid(pid, timeout=5)
    for bridge in bridges + node_bridges:
        if Path(f"/sys/class/net/{bridge}").exists():
            run(["ip", "link", "delete", bridge], check=False, timeout=10)
    for mp in mounts_under(paths.root):
        subprocess.run(["umount", "-l", str(mp)], capture_output=True, check=False, timeout=10)
    # rm(1) is several times faster than shutil.rmtree on image layers; never cross into a mount
    run(["rm", "-rf", "--one-file-system", paths.root], check=False, timeout=120)
    if paths.root.exists():
        shutil.rmtree(paths.root)
    log(f"sandbox down in {time.monotonic() - started:.1f}s: {paths.root} removed")


# --- status --------------------------------------------------------------------------------------

def _container_ips(paths: Paths) -> dict[str, dict[str, str]]:
    """service -> {network: ip} for the compose project's containers."""
    cp = run([dockerd.docker_cli(), "ps", "--quiet", "--filter", f"label=com.docker.compose.project={COMPOSE_PROJECT}"],
             env=dockerd.docker_env(paths), check=False, timeout=20)
    ids = cp.stdout.decode().split()
    if not ids:
        return {}
    cp = run([dockerd.docker_cli(), "inspect", *ids], env=dockerd.docker_env(paths), check=False, timeout=30)
    out: dict[str, dict[str, str]] = {}
    for c in json.loads(cp.stdout or b"[]"):
        svc = (c.get("Config", {}).get("Labels") or {}).get("com.docker.compose.service", "")
        nets = c.get("NetworkSettings", {}).get("Networks") or {}
        out[svc] = {name: n.get("IPAddress", "") for name, n in nets.items()}
    return out


def status(dir: Path | None = None) -> SandboxInfo:
    paths = Paths((dir or default_dir()).resolve())
    comps: dict[str, dict[str, Any]] = {}

    def comp(name: str, pid: int | None, **extra: Any) -> None:
        comps[name] = {"running": pid is not None, "pid": pid, **extra}

    comp("dockerd", dockerd.running(paths))
    comp("node-dockerd", node.running(paths), docker_host=paths.node_docker_host)
    comp("sshd", sshd.running(paths))
    comp("bind-primary", bind.running(paths, "primary"))
    comp("bind-secondary", bind.running(paths, "secondary"))
    for db in TARGET_PG_PORTS:
        comp(f"target-postgres-{db}", dataplane.postmaster_pid(paths, db))
    comp("target-mariadb-wpcs", dataplane.hoststores.mariadb_pid(dataplane.mysql_dir(paths)), port=TARGET_MYSQL_PORT)
    comp("target-redis-rentguy", dataplane.hoststores.redis_pid(dataplane.redis_dir(paths)), port=TARGET_REDIS_PORT)
    for svc in TARGET_APPS:
        comp(f"target-app-{svc}", pid_alive(dataplane.app_pid_file(paths, svc), "app.py"))
    comp("target-openbao", openbao.target_running(paths))
    comp("target-keycloak", target_keycloak.running(paths), url=target_keycloak.url())
    kube_pid = pid_alive(_kube_pid_file(paths))
    comp("kubeapi", kube_pid)

    services: dict[str, dict[str, str]] = {}
    ips: dict[str, dict[str, str]] = {}
    if comps["dockerd"]["running"] and paths.env_file.exists():
        for c in compose.ps(paths):
            services[c.get("Service", "")] = {"state": c.get("State", ""), "health": c.get("Health", ""),
                                              "container": c.get("Name", "")}
        ips = _container_ips(paths)
    expected = compose.services()
    compose_ok = bool(services) and all(
        services.get(s, {}).get("state") == "running" for s in expected)
    comps["compose"] = {"running": compose_ok, "services": len(services), "expected": len(expected)}
    scale_txt = _scale_file(paths).read_text().strip() if _scale_file(paths).exists() else ""
    is_up = all(c["running"] for n, c in comps.items() if n != "kubeapi")

    source_dbs = []
    for name, (service, dbname, user, pw_key) in SOURCE_DATABASES.items():
        net_ips = ips.get(service, {})
        source_dbs.append({
            "name": name, "service": service, "container": services.get(service, {}).get("container"),
            "db": dbname, "user": user, "password_env": pw_key, "port": 5432,
            "internal_addresses": net_ips,
        })
    bao_ips = ips.get("openbao", {})
    kubeconfig = _kubeconfig(paths)
    facts: dict[str, Any] = {
        "env_file": str(paths.env_file),
        "ssh": {"host": SSH_HOST, "port": SSH_PORT, "user": SSH_USER, "key": str(paths.ssh_user_key),
                "known_hosts": str(paths.ssh_known_hosts), "home": str(paths.ssh_home)},
        "docker": {"remote_docker_host": paths.docker_host, "ssh_url": f"ssh://{SSH_USER}@{SSH_HOST}:{SSH_PORT}",
                   "docker_config": str(paths.docker_config)},
        "compose": {"project": COMPOSE_PROJECT, "file": str(COMPOSE_FILE), "env_file": str(paths.env_file),
                    "services": services},
        "dns": {"primary": {"host": DNS_PRIMARY_HOST, "port": DNS_PRIMARY_PORT},
                "secondary": {"host": DNS_SECONDARY_HOST, "port": DNS_SECONDARY_PORT},
                "zone": DNS_ZONE, "ttl": DNS_TTL, "tsig_key_name": TSIG_KEY_NAME, "tsig_algorithm": bind.ALGORITHM,
                "tsig_key_file": str(paths.tsig_key_file), "vps_address": VPS_ADDRESS,
                "ingress_address": INGRESS_ADDRESS,
                "hostnames": [f"{h}.{DNS_ZONE}" for h in PUBLIC_HOSTS]},
        "traefik": {"host": TRAEFIK_HOST, "port": TRAEFIK_PORT},
        "kube": {"api": f"https://{LOOPBACK}:{KUBE_API_PORT}",
                 "node": {"docker_host": paths.node_docker_host, "images": list(node.NODE_IMAGES)},
                 "kubeconfig": str(kubeconfig) if kubeconfig else None,
                 "ingress": {"host": INGRESS_ADDRESS, "port": INGRESS_PORT}},
        "source_databases": source_dbs,
        "target_databases": [
            {"name": db, "host": LOOPBACK, "port": port, "superuser": TARGET_PG_SUPERUSER,
             "password_env": "TARGET_PG_PASSWORD", "maintenance_db": "postgres"}
            for db, port in TARGET_PG_PORTS.items()],
        "openbao": {
            "source": {"service": "openbao", "container": services.get("openbao", {}).get("container"),
                       "storage": "raft", "kv_mount": openbao.KV_MOUNT,
                       "internal_addresses": bao_ips, "internal_port": SOURCE_OPENBAO_INTERNAL_PORT,
                       "vps_loopback": {"host": SOURCE_OPENBAO_HOST, "port": SOURCE_OPENBAO_PORT},
                       "root_token_file": str(openbao.token_file(paths, "source")),
                       "init_file": str(openbao.init_file(paths, "source"))},
            "target": {"address": openbao.target_url(), "storage": "raft",
                       "root_token_file": str(openbao.token_file(paths, "target")),
                       "init_file": str(openbao.init_file(paths, "target"))},
        },
        "keycloak": {
            "source": {"service": "keycloak", "container": services.get("keycloak", {}).get("container"),
                       "url": f"http://{TRAEFIK_HOST}:{TRAEFIK_PORT}", "host_header": target_keycloak.PUBLIC_HOSTNAME,
                       "via": "the VPS Traefik", "hostname_key": target_keycloak.HOSTNAME_KEY,
                       "env_file": str(paths.env_file),
                       "admin_user_env": "KEYCLOAK_ADMIN_USER", "admin_password_env": "KEYCLOAK_ADMIN_PASSWORD"},
            "target": {"url": target_keycloak.url(), "env_file": str(paths.target_keycloak_env),
                       "hostname_key": target_keycloak.HOSTNAME_KEY,
                       "initial_hostname": target_keycloak.INITIAL_HOSTNAME,
                       "public_hostname": target_keycloak.PUBLIC_HOSTNAME,
                       "database": {"host": LOOPBACK, "port": TARGET_PG_PORTS["keycloak"],
                                    "name": target_keycloak.DATABASE, "user": TARGET_PG_SUPERUSER,
                                    "password_env": "TARGET_PG_PASSWORD"},
                       "service": target_keycloak.SERVICE,
                       "ingress": {"host": INGRESS_ADDRESS, "port": INGRESS_PORT,
                                   "host_header": target_keycloak.PUBLIC_HOSTNAME},
                       "reload": "restarts by itself when its env file changes (no signal needed)",
                       "log": str(target_keycloak.log_file(paths))},
        },
        "uploads": {"volume": f"{COMPOSE_PROJECT}_{UPLOADS_VOLUME}", "service": UPLOADS_SERVICE,
                    "mount": UPLOADS_MOUNT, "pvc_dir": str(paths.uploads_pvc)},
        "logs": str(paths.logs),
    }
    return SandboxInfo(dir=paths.root, up=is_up, scale=int(scale_txt) if scale_txt.isdigit() else None,
                       components=comps, facts=facts)


def leftovers(dir: Path) -> dict[str, list[str]]:
    """Whatever a sandbox at ``dir`` left behind: processes, mounts, files (empty lists when clean)."""
    root = dir.resolve()
    return {
        "processes": [str(p) for p in processes_mentioning(f"{root}/") if alive(p)],
        "mounts": [str(m) for m in mounts_under(root)],
        "files": [str(root)] if root.exists() else [],
        "ports": [f"{h}:{p}" for h, p in _ports() if _listening(h, p)],
    }


def _ports() -> list[tuple[str, int]]:
    ports = [(SSH_HOST, SSH_PORT), (DNS_PRIMARY_HOST, DNS_PRIMARY_PORT), (DNS_SECONDARY_HOST, DNS_SECONDARY_PORT),
             (TRAEFIK_HOST, TRAEFIK_PORT), (SOURCE_OPENBAO_HOST, SOURCE_OPENBAO_PORT),
             (LOOPBACK, openbao.TARGET_OPENBAO_PORT), (LOOPBACK, TARGET_KEYCLOAK_PORT)]
    ports += [(LOOPBACK, p) for p in TARGET_PG_PORTS.values()]
    ports += [(LOOPBACK, TARGET_MYSQL_PORT), (LOOPBACK, TARGET_REDIS_PORT)]
    ports += [(LOOPBACK, port) for port, _, _ in TARGET_APPS.values()]
    return ports


def _listening(host: str, port: int) -> bool:
    return tcp_open(host, port, 0.2)


__all__ = ["SandboxInfo", "SandboxError", "up", "down", "status", "leftovers"]
