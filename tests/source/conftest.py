"""A small private "VPS" for the source-side tests: its own dockerd, reachable only through its own sshd.

dockerd runs with its own socket, data-root, exec-root and pidfile, without iptables or the default
bridge (the host firewall is never touched); sshd listens on a free 127.0.0.1 port with its own host key,
user key and known_hosts, and `SetEnv DOCKER_HOST=...` so that `docker system dial-stdio` finds the daemon.
The compose project `shop` is built from a busybox image made with `docker import`.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUSYBOX = Path("/bin/busybox") if Path("/bin/busybox").exists() else Path("/usr/bin/busybox")
DOCKER = shutil.which("docker") or "/usr/bin/docker"
PROJECT = "shop"
CANARY = "canary-Zq81xLmW"  # a secret value in the env file: it must never appear in any output

FAKE_PSQL = r"""#!/bin/sh
# A stand-in for psql in the tiny fixture: answers the inventory's two queries like psql -At would.
[ "$(id -u)" = "$(id -u postgres)" ] || { echo "psql: must run as postgres" >&2; exit 2; }
case "$*" in
  *server_version*) echo "15.6" ;;
  *pg_database*) printf 'postgres|7500000\nshop|9100000\n' ;;
  *) echo "unexpected query: $*" >&2; exit 1 ;;
esac
"""

COMPOSE = f"""
name: {PROJECT}
services:
  web:
    image: mgtest/busybox:1
    init: true
    restart: unless-stopped
    command: ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
    env_file: [shop.env]
    environment:
      SITE_NAME: shop
    ports: ["127.0.0.1:${{WEB_PORT}}:8080"]
    volumes: ["uploads:/www/uploads"]
    networks: [front]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 30
  worker:
    image: mgtest/busybox:1
    init: true
    restart: unless-stopped
    command: ["sleep", "1000000"]
    env_file: [shop.env]
    networks: [front, back]
  db:
    image: mgtest/postgres-fake:15
    init: true
    restart: always
    command: ["sleep", "1000000"]
    environment:
      POSTGRES_PASSWORD: {CANARY}
    volumes: ["dbdata:/var/lib/postgresql/data"]
    networks: [back]
networks:
  front: {{}}
  back: {{}}
volumes:
  uploads: {{}}
  dbdata: {{}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def busybox_rootfs(extra: dict[str, tuple[bytes, int]] | None = None) -> bytes:
    """A tar of busybox-static plus one link per applet, /tmp, and root/postgres users."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        def mkdir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        for d in ("bin", "etc", "www", "var", "var/lib", "var/lib/postgresql", "root"):
            mkdir(d)
        mkdir("tmp", 0o1777)
        add("bin/busybox", BUSYBOX.read_bytes(), 0o755)
        applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            if applet in ("busybox",) or "/" in applet:
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        add("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\npostgres:x:70:70:postgres:/var/lib/postgresql:/bin/sh\n")
        add("etc/group", b"root:x:0:\npostgres:x:70:\n")
        add("www/index.html", b"shop\n")
        for name, (data, mode) in (extra or {}).items():
            add(name, data, mode)
    return buf.getvalue()


@dataclass
class VPS:
    root: Path
    sock: Path
    ssh_port: int
    web_port: int
    key: Path
    known_hosts: Path
    sshd_pid_file: Path
    compose_dir: Path
    env: dict[str, str]

    def docker(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=input is None,
                              input=input, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {proc.stderr!r}")
        return proc

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.docker("compose", "--project-directory", str(self.compose_dir), *args)

    @property
    def sshd_pid(self) -> int:
        return int(self.sshd_pid_file.read_text().split()[0])

    def ssh_environment(self, **extra: Any) -> dict[str, Any]:
        """The runbook's `environment.source` for this VPS."""
        ssh = {"host": "127.0.0.1", "port": self.ssh_port, "user": "root", "key_file": str(self.key),
               "known_hosts": str(self.known_hosts), "config_file": str(self.root / "no-ssh-config"),
               "connect_timeout_s": 5, "reconnect_attempts": 2, **extra}
        return {"ssh": ssh, "address": "127.0.0.1", "compose_project": PROJECT,
                "compose_dir": str(self.compose_dir)}

    def session_children(self) -> list[int]:
        """The sshd processes serving sessions (children of the listener)."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.sshd_pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]

    def kill_sessions(self) -> int:
        pids = self.session_children()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)


def _start_dockerd(root: Path) -> subprocess.Popen[bytes]:
    sock = root / "docker.sock"
    log = (root / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        ["dockerd", "--storage-driver=overlay2", "--iptables=false", "--ip6tables=false", "--bridge=none",
         f"--host=unix://{sock}", f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}",
         f"--pidfile={root / 'dockerd.pid'}", "--log-level=warn"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    wait_for("dockerd", lambda: subprocess.run([DOCKER, "info"], env=env, capture_output=True).returncode == 0, 60)
    return proc


def _write_sshd(root: Path, port: int, sock: Path, docker_config: Path) -> tuple[Path, Path, Path]:
    ssh = root / "ssh"
    ssh.mkdir(mode=0o700)
    host_key, user_key = ssh / "host_key", ssh / "user_key"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (ssh / "authorized_keys").write_text(user_key.with_suffix(".pub").read_text())
    pub = host_key.with_suffix(".pub").read_text().split()
    known = ssh / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    (ssh / "sshd_config").write_text("\n".join([
        "ListenAddress 127.0.0.1", f"Port {port}", f"HostKey {host_key}", f"PidFile {ssh / 'sshd.pid'}",
        f"AuthorizedKeysFile {ssh / 'authorized_keys'}", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "AllowTcpForwarding yes", "PrintMotd no", "MaxStartups 50:30:100",  # MaxSessions: the default, 10
        f"SetEnv DOCKER_HOST=unix://{sock} DOCKER_CONFIG={docker_config}", "Subsystem sftp internal-sftp", ""]))
    return ssh, user_key, known


def start_sshd(ssh_dir: Path) -> subprocess.Popen[bytes]:
    log = (ssh_dir / "sshd.log").open("ab")
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(ssh_dir / "sshd_config")],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    port = int(next(line.split()[1] for line in (ssh_dir / "sshd_config").read_text().splitlines()
                    if line.startswith("Port ")))

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_for("sshd", listening, 10)
    return proc


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def vps() -> Iterator[VPS]:
    if not shutil.which("dockerd") or not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs dockerd and sshd")
    root = Path(tempfile.mkdtemp(prefix="mgsrc-", dir="/tmp"))
    dockerd = _start_dockerd(root)
    sshd = None
    try:
        sock = root / "docker.sock"
        docker_config = root / "docker-config"
        (docker_config / "cli-plugins").mkdir(parents=True)
        compose_bin = REPO / ".venv" / "bin" / "docker-compose"
        (docker_config / "cli-plugins" / "docker-compose").symlink_to(compose_bin.resolve())
        env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(docker_config)}
        port, web_port = free_port(), free_port()
        ssh_dir, user_key, known = _write_sshd(root, port, sock, docker_config)
        sshd = start_sshd(ssh_dir)
        compose_dir = root / "compose"
        compose_dir.mkdir()
        (compose_dir / "compose.yaml").write_text(COMPOSE)
        (compose_dir / "shop.env").write_text(f"API_TOKEN={CANARY}\nLOG_LEVEL=info\n")
        (compose_dir / ".env").write_text(f"WEB_PORT={web_port}\n")
        vps = VPS(root, sock, port, web_port, user_key, known, ssh_dir / "sshd.pid", compose_dir, env)
        vps.docker("import", "-c", "ENV PATH=/bin", "-", "mgtest/busybox:1", input=busybox_rootfs())
        vps.docker("import", "-c", "ENV PATH=/bin", "-", "mgtest/postgres-fake:15",
                   input=busybox_rootfs({"bin/psql": (FAKE_PSQL.encode(), 0o755)}))
        vps.compose("up", "-d", "--wait", "--wait-timeout", "60")
        yield vps
        subprocess.run([DOCKER, "compose", "--project-directory", str(compose_dir), "down", "-v", "-t", "1"],
                       env=env, capture_output=True, timeout=120)
    finally:
        if sshd is not None:
            _stop(sshd)
        _stop(dockerd, 30)
        subprocess.run(["umount", "-R", str(root / "exec")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


# The real platform (migrator/sandbox): its session fixture, for the tests marked `sandbox`.
from migrator.sandbox.pytest_plugin import sandbox  # noqa: E402,F401
