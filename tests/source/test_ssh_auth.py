"""SSH authentication and routing against private sshds (no dockerd): ssh-agent alongside key files, a
key that needs a passphrase, and a ProxyJump chain used in full.

The chain's proof: hop1 may open channels only to hop2 (PermitOpen), hop2 only to the VPS, so a
connection that skipped a hop (the old first-hop-only behaviour) is refused by sshd itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from migrator.adapters.ssh import SSHSession
from migrator.errors import PermanentError
from migrator.runbook.environment import SSHConfig

from .conftest import _stop, free_port, start_sshd

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="needs sshd")


def keygen(path: Path, passphrase: str = "") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True)
    return path


@dataclass
class Hosts:
    root: Path
    ports: dict[str, int]  # hop1, hop2, vps
    known_hosts: Path
    authorized: Path

    def cfg(self, **extra: object) -> SSHConfig:
        return SSHConfig(host="127.0.0.1", port=self.ports["vps"], user="root",
                         known_hosts=str(self.known_hosts), config_file=str(self.root / "no_config"),
                         reconnect_attempts=0, **extra)  # type: ignore[arg-type]

    def authorize(self, *keys: Path) -> None:
        self.authorized.write_text("".join(k.with_suffix(".pub").read_text() for k in keys))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    root = tmp_path_factory.mktemp("sshhosts")
    ports = {name: free_port() for name in ("hop1", "hop2", "vps")}
    permit = {"hop1": f"127.0.0.1:{ports['hop2']}", "hop2": f"127.0.0.1:{ports['vps']}", "vps": "none"}
    authorized = root / "authorized_keys"
    authorized.write_text("")
    known = []
    procs = []
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    try:
        for name, port in ports.items():
            d = root / name
            d.mkdir(mode=0o700)
            host_key = keygen(d / "host_key")
            pub = host_key.with_suffix(".pub").read_text().split()
            known.append(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
            (d / "sshd_config").write_text("\n".join([
                "ListenAddress 127.0.0.1", f"Port {port}", f"HostKey {host_key}", f"PidFile {d / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}", "PermitRootLogin prohibit-password",
                "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
                "AllowTcpForwarding yes", f"PermitOpen {permit[name]}", "PrintMotd no", ""]))
            procs.append(start_sshd(d))
        (root / "known_hosts").write_text("".join(known))
        (root / "no_config").write_text("")
        yield Hosts(root, ports, root / "known_hosts", authorized)
    finally:
        for p in procs:
            _stop(p)


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        if sock.exists():
            break
        import time

        time.sleep(0.02)
    env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
    monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
    try:
        yield env
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(5)


def echo(ssh: SSHSession, word: str) -> bytes:
    try:
        return ssh.run(["echo", word]).stdout
    finally:
        ssh.close()


def test_agent_alongside_a_key_file(hosts: Hosts, agent: dict[str, str], tmp_path: Path) -> None:
    in_agent, refused_file = keygen(tmp_path / "in_agent"), keygen(tmp_path / "other")
    hosts.authorize(in_agent)  # only the agent's key is authorized; the runbook's key file is not
    subprocess.run(["ssh-add", "-q", str(in_agent)], env=agent, check=True, capture_output=True)
    assert echo(SSHSession.from_config(hosts.cfg(key_file=str(refused_file)), tmp_path), "agent") == b"agent\n"
    # use_agent: false keeps to the key files
    with pytest.raises(PermanentError, match=r"authentication refused .* with key .*other; check"):
        SSHSession.from_config(hosts.cfg(key_file=str(refused_file), use_agent=False), tmp_path).client()


def test_a_key_that_needs_a_passphrase(hosts: Hosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = keygen(tmp_path / "locked", passphrase="correct horse battery")
    hosts.authorize(locked)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(PermanentError) as err:
        SSHSession.from_config(hosts.cfg(key_file=str(locked)), tmp_path).client()
    message = str(err.value)
    assert "\n" not in message
    assert f"key {locked} needs a passphrase and no ssh-agent is available" in message
    assert f"ssh-add {locked}" in message


def test_a_passphrase_key_through_the_agent(hosts: Hosts, agent: dict[str, str], tmp_path: Path) -> None:
    locked = keygen(tmp_path / "locked", passphrase="pw-7781")
    hosts.authorize(locked)
    with pytest.raises(PermanentError, match="needs a passphrase is not in the running ssh-agent"):
        SSHSession.from_config(hosts.cfg(key_file=str(locked)), tmp_path).client()
    # ssh-add reads the passphrase from SSH_ASKPASS when there is no terminal
    askpass = tmp_path / "askpass"
    askpass.write_text("#!/bin/sh\necho pw-7781\n")
    askpass.chmod(0o700)
    subprocess.run(["ssh-add", "-q", str(locked)], check=True, capture_output=True, stdin=subprocess.DEVNULL,
                   env={**agent, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"})
    assert echo(SSHSession.from_config(hosts.cfg(key_file=str(locked)), tmp_path), "unlocked") == b"unlocked\n"


def test_proxyjump_chain_in_full(hosts: Hosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    key = keygen(tmp_path / "key")
    hosts.authorize(key)
    p = hosts.ports
    chain = f"root@127.0.0.1:{p['hop1']},root@127.0.0.1:{p['hop2']}"
    ssh = SSHSession.from_config(hosts.cfg(key_file=str(key), proxy_jump=chain), tmp_path)
    try:
        assert ssh.run(["echo", "two hops"]).stdout == b"two hops\n"
        assert ssh._jump is not None and ssh._jump.target.port == p["hop2"]
        assert ssh._jump._jump is not None and ssh._jump._jump.target.port == p["hop1"]
    finally:
        ssh.close()
    # the first hop alone cannot reach the VPS (PermitOpen): skipping a hop is refused, as proof
    # that the chain above really went through both
    from migrator.errors import TemporaryError

    with pytest.raises(TemporaryError, match="cannot reach it"):
        SSHSession.from_config(hosts.cfg(key_file=str(key), proxy_jump=f"root@127.0.0.1:{p['hop1']}"),
                               tmp_path).client()
    # the same chain from ~/.ssh/config's ProxyJump
    conf = tmp_path / "ssh_config"
    conf.write_text(f"Host vps\n  HostName 127.0.0.1\n  Port {p['vps']}\n  User root\n  IdentityFile {key}\n"
                    f"  UserKnownHostsFile {hosts.known_hosts}\n  ProxyJump {chain}\n")
    assert echo(SSHSession.from_config(SSHConfig(host="vps", config_file=str(conf), reconnect_attempts=0),
                                       tmp_path), "from config") == b"from config\n"
