"""The VPS's front door: sshd accepts only the sandbox's key, and only with the right host key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from migrator.sandbox.platform import SandboxInfo

pytestmark = pytest.mark.sandbox


def _client(known_hosts: Path) -> paramiko.SSHClient:
    c = paramiko.SSHClient()
    c.load_host_keys(str(known_hosts))
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    return c


def _connect(c: paramiko.SSHClient, ssh: dict[str, object], key: str) -> None:
    c.connect(str(ssh["host"]), port=int(str(ssh["port"])), username=str(ssh["user"]), key_filename=key,
              allow_agent=False, look_for_keys=False, timeout=10)


def test_right_keys_reach_the_vps_docker(sandbox: SandboxInfo) -> None:
    ssh = sandbox.facts["ssh"]
    c = _client(Path(ssh["known_hosts"]))
    _connect(c, ssh, ssh["key"])
    try:
        _, out, _ = c.exec_command("echo $DOCKER_HOST; docker version --format '{{.Server.Version}}'", timeout=20)
        lines = out.read().decode().split()
        assert out.channel.recv_exit_status() == 0
        assert lines[0] == sandbox.facts["docker"]["remote_docker_host"]
        assert lines[1][0].isdigit()
    finally:
        c.close()


def test_wrong_host_key_is_rejected(sandbox: SandboxInfo, tmp_path: Path) -> None:
    ssh = sandbox.facts["ssh"]
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    pub = (tmp_path / "other.pub").read_text().split()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{ssh['host']}]:{ssh['port']} {pub[0]} {pub[1]}\n")
    c = _client(kh)
    with pytest.raises(paramiko.BadHostKeyException):
        _connect(c, ssh, ssh["key"])
    c.close()


def test_unknown_host_is_rejected(sandbox: SandboxInfo, tmp_path: Path) -> None:
    ssh = sandbox.facts["ssh"]
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    c = _client(kh)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _connect(c, ssh, ssh["key"])
    c.close()


def test_wrong_user_key_is_rejected(sandbox: SandboxInfo, tmp_path: Path) -> None:
    ssh = sandbox.facts["ssh"]
    stranger = tmp_path / "id_stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    c = _client(Path(ssh["known_hosts"]))
    with pytest.raises(paramiko.AuthenticationException):
        _connect(c, ssh, str(stranger))
    c.close()


def test_sftp_works(sandbox: SandboxInfo) -> None:
    ssh = sandbox.facts["ssh"]
    c = _client(Path(ssh["known_hosts"]))
    _connect(c, ssh, ssh["key"])
    try:
        sftp = c.open_sftp()
        assert "sevensa.env" in sftp.listdir(str(sandbox.dir))
        sftp.close()
    finally:
        c.close()
