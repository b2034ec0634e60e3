"""The SSH and Docker adapters against the private VPS."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from migrator.adapters.docker import DockerRemote
from migrator.adapters.ssh import SSHSession
from migrator.errors import PermanentError, TemporaryError
from migrator.runbook.environment import SourceConfig, SSHConfig

from .conftest import CANARY, PROJECT, VPS


def ssh_cfg(vps: VPS, **extra: object) -> SSHConfig:
    return SSHConfig(**vps.ssh_environment(**extra)["ssh"])


def test_run_env_stays_out_of_argv(vps: VPS, tmp_path: Path) -> None:
    ssh = SSHSession.from_config(ssh_cfg(vps), tmp_path)
    try:
        res = ssh.run(["sh", "-c", 'printf "%s|" "$TOKEN"; ps -o args | grep -c "[c]anary" || true'],
                      env={"TOKEN": CANARY + "\nline2 'q' $x"})
        assert res.rc == 0, res.stderr
        out = res.stdout.decode()
        assert out.startswith(CANARY + "\nline2 'q' $x|")
        assert out.rstrip().endswith("0")  # not visible in any process's argv
        res = ssh.run(["cat"], env={"A": "1"}, stdin=b"x" * 300_000)
        assert res.stdout == b"x" * 300_000
        assert ssh.run(["sh", "-c", "exit 7"]).rc == 7
    finally:
        ssh.close()


def test_stream_and_reconnect(vps: VPS, tmp_path: Path) -> None:
    ssh = SSHSession.from_config(ssh_cfg(vps), tmp_path)
    try:
        data = bytes(range(256)) * 40_000  # 10 MB
        with ssh.stream(["sha256sum"]) as s:
            s.stdin.write(data)
            s.stdin.close()
            out = s.stdout.read()
            assert s.exit_status() == 0
        assert out.split()[0].decode() == hashlib.sha256(data).hexdigest()
        first = ssh.connects
        assert vps.kill_sessions() >= 1
        with pytest.raises(TemporaryError):
            for _ in range(50):
                ssh.run(["sleep", "0.1"])  # the dropped transport is noticed...
        assert ssh.run(["true"]).rc == 0  # ...and re-opened
        assert ssh.connects > first
    finally:
        ssh.close()


def _hold(ssh: SSHSession, n: int) -> list[object]:
    return [ssh.open_exec_channel("cat >/dev/null") for _ in range(n)]  # ends when closed


def test_sessions_past_maxsessions_wait_and_keep_the_connection(vps: VPS, tmp_path: Path) -> None:
    """sshd (MaxSessions, default 10) refuses a connection's 11th session with "open failed: Connect
    failed". That once dropped the whole connection, and with it a copy's other channels ("Socket is
    closed"): a resume failed in CI. Now a session past the limit waits for one to end, idle holders
    give theirs back, and the channels in use carry on."""
    import threading
    import time

    # max_sessions above sshd's own limit: sshd's refusal must be survived, not just our own count.
    ssh = SSHSession.from_config(ssh_cfg(vps, max_sessions=14), tmp_path)
    try:
        held = _hold(ssh, 10)
        got: list[object] = []
        opener = threading.Thread(target=lambda: got.append(ssh.open_exec_channel("echo late")))
        opener.start()
        time.sleep(1.5)
        assert not got, "an 11th session opened while sshd allows 10"
        held.pop().close()  # type: ignore[attr-defined]
        opener.join(timeout=15)
        assert got, "no session after one ended"
        assert got[0].makefile("rb").read() == b"late\n"  # type: ignore[attr-defined]
        assert all(not c.closed for c in held), "the channels in use were closed"  # type: ignore[attr-defined]
        assert ssh.connects == 1

        # An idle holder gives its session back at once.
        idle = held.pop()
        ssh.add_idle_releaser(idle.close)  # type: ignore[attr-defined]
        held.append(ssh.open_exec_channel("cat >/dev/null"))
        assert idle.closed  # type: ignore[attr-defined]

        held += _hold(ssh, 10 - len(held))  # sshd's 10 in use again
        ssh.session_wait_s = 1
        with pytest.raises(TemporaryError, match="sessions of the connection stayed in use .*MaxSessions"):
            ssh.open_exec_channel("true")
        assert ssh.connects == 1
    finally:
        ssh.close()


def test_max_sessions_holds_when_threads_open_at_once(vps: VPS, tmp_path: Path) -> None:
    """The steps of a parallel run (and a copy's jobs) open sessions from several threads at the same
    moment: the count and the reservation are one step, so never more than max_sessions are open."""
    import threading

    ssh = SSHSession.from_config(ssh_cfg(vps, max_sessions=4), tmp_path)
    start = threading.Barrier(12)
    out: list[bytes] = []

    def one(i: int) -> None:
        start.wait()
        res = ssh.run(["sh", "-c", f"sleep 0.3; echo {i}"])
        out.append(res.stdout)

    try:
        ssh.run(["true"])  # connected before the rush
        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=30)
        assert sorted(out) == sorted(f"{i}\n".encode() for i in range(12))
        assert ssh.sessions_peak <= 4, ssh.sessions_peak
        assert ssh.session_waits > 0  # some had to wait: the limit was reached, and held
    finally:
        ssh.close()


def test_docker_execs_past_maxsessions(vps: VPS, tmp_path: Path) -> None:
    """More execs at once than sshd allows sessions: each waits its turn instead of failing."""
    from concurrent.futures import ThreadPoolExecutor

    dr = DockerRemote.from_config(SourceConfig(**vps.ssh_environment()), tmp_path)
    try:
        web = next(c for c in dr.project_containers(PROJECT) if c.labels["com.docker.compose.service"] == "web")
        with ThreadPoolExecutor(14) as pool:
            results = list(pool.map(lambda i: dr.exec_run(web.id, ["sh", "-c", f"sleep 1; echo {i}"])[:2],
                                    range(14)))
        assert results == [(0, f"{i}\n".encode()) for i in range(14)]
        assert dr.ssh.connects == 1
    finally:
        dr.close()


def test_tunnel(vps: VPS, tmp_path: Path) -> None:
    ssh = SSHSession.from_config(ssh_cfg(vps), tmp_path)
    try:
        with ssh.tunnel("127.0.0.1", vps.web_port) as (host, port):
            with socket.create_connection((host, port), timeout=5) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                reply = b""
                while chunk := conn.recv(4096):
                    reply += chunk
        assert b"200" in reply.split(b"\r\n")[0] and reply.endswith(b"shop\n")
    finally:
        ssh.close()


def test_unknown_and_changed_host_key(vps: VPS, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(PermanentError, match=r"unknown host key for \[127.0.0.1\]:\d+: not in .*known_hosts"):
        SSHSession.from_config(ssh_cfg(vps, known_hosts=str(empty)), tmp_path).client()
    # Rehearsal: accepted once and written down, then checked like any other.
    ssh = SSHSession.from_config(ssh_cfg(vps, known_hosts=str(empty), accept_unknown_host_key=True), tmp_path)
    assert ssh.run(["true"]).rc == 0
    ssh.close()
    assert f"[127.0.0.1]:{vps.ssh_port} ssh-ed25519" in empty.read_text()
    SSHSession.from_config(ssh_cfg(vps, known_hosts=str(empty)), tmp_path).close()
    other = vps.known_hosts.read_text().split()
    empty.write_text(f"{other[0]} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmQtiydC2wOmHIuDHWb7ZFA5h+iYNy+ZuVvPnZXy9Fq\n")
    with pytest.raises(PermanentError, match="CHANGED"):
        SSHSession.from_config(ssh_cfg(vps, known_hosts=str(empty), accept_unknown_host_key=True), tmp_path).client()


def test_refused_key_and_closed_port(vps: VPS, tmp_path: Path) -> None:
    import subprocess

    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    with pytest.raises(PermanentError, match="authentication refused for user 'root'"):
        SSHSession.from_config(ssh_cfg(vps, key_file=str(wrong)), tmp_path).client()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(TemporaryError, match=f"127.0.0.1:{closed}: cannot connect"):
        SSHSession.from_config(ssh_cfg(vps, port=closed, reconnect_attempts=0), tmp_path).client()


def test_ssh_config_alias(vps: VPS, tmp_path: Path) -> None:
    conf = tmp_path / "ssh_config"
    conf.write_text(f"Host myvps\n  HostName 127.0.0.1\n  Port {vps.ssh_port}\n  User root\n"
                    f"  IdentityFile {vps.key}\n  UserKnownHostsFile {vps.known_hosts}\n")
    ssh = SSHSession.from_config(SSHConfig(host="myvps", config_file=str(conf)), tmp_path)
    try:
        assert ssh.run(["echo", "hi"]).stdout == b"hi\n"
    finally:
        ssh.close()
    # ProxyJump through the same sshd (to itself): a direct-tcpip channel through the jump host.
    conf.write_text(f"Host viajump\n  HostName 127.0.0.1\n  Port {vps.ssh_port}\n  User root\n"
                    f"  IdentityFile {vps.key}\n  UserKnownHostsFile {vps.known_hosts}\n"
                    f"  ProxyJump root@127.0.0.1:{vps.ssh_port}\n")
    ssh = SSHSession.from_config(SSHConfig(host="viajump", config_file=str(conf)), tmp_path)
    try:
        assert ssh.run(["echo", "hop"]).stdout == b"hop\n"
        assert ssh._jump is not None and ssh._jump.transport_alive()
    finally:
        ssh.close()


def test_docker_remote(vps: VPS, tmp_path: Path) -> None:
    source = SourceConfig(**vps.ssh_environment())
    dr = DockerRemote.from_config(source, tmp_path)
    try:
        names = sorted(c.labels["com.docker.compose.service"] for c in dr.project_containers(PROJECT))
        assert names == ["db", "web", "worker"]
        web = next(c for c in dr.project_containers(PROJECT) if c.labels["com.docker.compose.service"] == "web")
        rc, out, err = dr.exec_run(web.id, ["sh", "-c", 'printf "%s" "$SECRET"; echo oops >&2; exit 3'],
                                   env={"SECRET": CANARY})
        assert (rc, out, err) == (3, CANARY.encode(), b"oops\n")
        data = b"0123456789abcdef" * 500_000  # 8 MB through stdin and back
        with dr.exec_stream(web.id, ["cat"], stdin=True) as s:
            import threading

            t = threading.Thread(target=lambda: (s.write(data), s.close_stdin()))
            t.start()
            got = bytearray()
            while chunk := s.read(65536):
                got += chunk
            t.join()
            assert s.exit_code() == 0
        assert bytes(got) == data
        with pytest.raises(PermanentError, match="no container of compose project 'nope'"):
            dr.require_project("nope")
    finally:
        dr.close()


def _dial_stdio_under(sshd_pid: int) -> list[int]:
    """`docker system dial-stdio` processes served by this VPS's sshd (never another sshd's)."""
    parents: dict[int, int] = {}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
        if b"dial-stdio" in cmdline:
            found.append(int(entry.name))

    def under(pid: int) -> bool:
        for _ in range(64):
            if pid == sshd_pid:
                return True
            if pid <= 1 or pid not in parents:
                return False
            pid = parents[pid]
        return False

    return [pid for pid in found if under(pid)]


def test_docker_remote_replaces_a_pooled_connection_that_died(vps: VPS, tmp_path: Path) -> None:
    """A pooled Docker API connection whose far end went away while idle (dockerd closing it ends its
    dial-stdio) is replaced, not reused: reusing it failed a copy with "Remote end closed connection"."""
    import os
    import signal
    import time

    dr = DockerRemote.from_config(SourceConfig(**vps.ssh_environment()), tmp_path)
    try:
        web = next(c for c in dr.project_containers(PROJECT) if c.labels["com.docker.compose.service"] == "web")
        assert dr.exec_run(web.id, ["true"])[0] == 0  # connections now pooled, a spare exec channel ready
        victims = _dial_stdio_under(vps.sshd_pid)
        assert victims, "no dial-stdio process found under the VPS's sshd"
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # a short-lived one (an exec's own channel) already ended
                pass
        deadline = time.monotonic() + 10
        while _dial_stdio_under(vps.sshd_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the channels' close reaches paramiko
        # A plain API call first (no retry around it: only the pool's check can save it), then execs.
        assert dr.client.api.version()["ApiVersion"]
        for _ in range(3):
            assert dr.exec_run(web.id, ["sh", "-c", "echo ok"])[:2] == (0, b"ok\n")
    finally:
        dr.close()


def _ended_channel(dr: DockerRemote) -> object:
    """An SSH exec channel whose remote command has ended and closed it, as a spare dial-stdio can be."""
    import time

    channel = dr.ssh.open_exec_channel("true")
    deadline = time.monotonic() + 10
    while not channel.closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert channel.closed
    return channel


def test_exec_started_on_a_channel_that_ended_is_started_again(vps: VPS, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A spare dial-stdio channel can end between the check in _start_channel and the exec's start
    request; paramiko then raises a bare OSError("Socket is closed"), which once failed a resume in CI as
    an internal error. The exec is created and started again on a channel of its own."""
    dr = DockerRemote.from_config(SourceConfig(**vps.ssh_environment()), tmp_path)
    try:
        web = next(c for c in dr.project_containers(PROJECT) if c.labels["com.docker.compose.service"] == "web")
        real = dr._start_channel
        given: list[bool] = []

        def first_ended(timeout: float, spare: bool = True) -> object:
            given.append(spare)
            return _ended_channel(dr) if len(given) == 1 else real(timeout, spare=spare)

        monkeypatch.setattr(dr, "_start_channel", first_ended)
        assert dr.exec_run(web.id, ["sh", "-c", "echo ok"])[:2] == (0, b"ok\n")
        assert given == [True, False]  # the second attempt did not take the spare

        monkeypatch.setattr(dr, "_start_channel", lambda timeout, spare=True: _ended_channel(dr))
        with pytest.raises(TemporaryError, match="ended before the Docker API answered, twice"):
            dr.exec_run(web.id, ["true"])
    finally:
        dr.close()


def test_docker_not_answering(vps: VPS, tmp_path: Path) -> None:
    env = vps.ssh_environment()
    env["ssh"]["docker_host"] = "unix:///nonexistent/docker.sock"
    with pytest.raises(PermanentError, match=r"docker on root@127.0.0.1:\d+: the Docker API does not answer"):
        DockerRemote.from_config(SourceConfig(**env), tmp_path)
