"""The VPS's front door: a private sshd on 127.0.0.1:22022 with its own host key and one user key."""

from __future__ import annotations

import os
from pathlib import Path

from .layout import SSH_HOST, SSH_PORT, SSH_USER, Paths
from .proc import Log, SandboxError, pid_alive, run, spawn, stop_pid_file, tcp_open, wait_until

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"


def _keygen(path: Path, comment: str) -> None:
    if path.exists() and path.with_suffix(".pub").exists():
        return
    path.unlink(missing_ok=True)
    run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
    os.chmod(path, 0o600)


def host_key(paths: Paths) -> Path:
    return paths.ssh / "ssh_host_ed25519_key"


def write_files(paths: Paths) -> None:
    paths.ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.ssh, 0o700)
    _keygen(host_key(paths), "sevensa-sandbox-host")
    _keygen(paths.ssh_user_key, "migrator@sandbox")
    authorized = paths.ssh / "authorized_keys"
    authorized.write_text(paths.ssh_user_key.with_suffix(".pub").read_text())
    os.chmod(authorized, 0o600)
    host_pub = host_key(paths).with_suffix(".pub").read_text().split()
    paths.ssh_known_hosts.write_text(f"[{SSH_HOST}]:{SSH_PORT} {host_pub[0]} {host_pub[1]}\n")
    # sshd needs its privilege-separation directory
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    config = "\n".join(
        [
            f"ListenAddress {SSH_HOST}",
            f"Port {SSH_PORT}",
            f"HostKey {host_key(paths)}",
            f"PidFile {paths.ssh / 'sshd.self.pid'}",
            f"AuthorizedKeysFile {authorized}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "AllowTcpForwarding yes",
            "AllowStreamLocalForwarding yes",
            "X11Forwarding no",
            "PrintMotd no",
            "LogLevel INFO",
            f"SetEnv DOCKER_HOST={paths.docker_host} DOCKER_CONFIG={paths.docker_config}",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )
    (paths.ssh / "sshd_config").write_text(config)
    # A HOME for clients (the Docker SDK reads ~/.ssh/config and ~/.ssh/known_hosts).
    dot = paths.ssh_home / ".ssh"
    dot.mkdir(parents=True, exist_ok=True)
    os.chmod(dot, 0o700)
    (dot / "known_hosts").write_text(paths.ssh_known_hosts.read_text())
    (dot / "config").write_text(
        "\n".join(
            [
                f"Host {SSH_HOST}",
                f"  HostName {SSH_HOST}",
                f"  Port {SSH_PORT}",
                f"  User {SSH_USER}",
                f"  IdentityFile {paths.ssh_user_key}",
                f"  UserKnownHostsFile {paths.ssh_known_hosts}",
                "  StrictHostKeyChecking yes",
                "  IdentitiesOnly yes",
                "",
            ]
        )
    )


def running(paths: Paths) -> int | None:
    return pid_alive(paths.sshd_pid, "sshd")


def start(paths: Paths, log: Log) -> None:
    write_files(paths)
    if running(paths) and tcp_open(SSH_HOST, SSH_PORT):
        log("sshd: already running")
        return
    if tcp_open(SSH_HOST, SSH_PORT):
        raise SandboxError(f"{SSH_HOST}:{SSH_PORT} is taken by another process")
    run([SSHD, "-t", "-f", paths.ssh / "sshd_config"])
    pid = spawn([SSHD, "-D", "-e", "-f", paths.ssh / "sshd_config"], pid_file=paths.sshd_pid,
                log_file=paths.logs / "sshd.log")
    wait_until("sshd", lambda: tcp_open(SSH_HOST, SSH_PORT), 10)
    log(f"sshd: up on {SSH_HOST}:{SSH_PORT} (pid {pid})")


def stop(paths: Paths) -> None:
    stop_pid_file(paths.sshd_pid, exe_hint="sshd", timeout=5)
