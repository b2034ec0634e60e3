"""One SSH connection to the VPS, on paramiko: commands, streams and tunnels.

Public API (consumed by other step types; keep it stable):

    from migrator.adapters.ssh import SSHSession, Result

    ssh = SSHSession.from_config(cfg: SSHConfig, base_dir: Path) -> SSHSession
    ssh.run(argv: list[str], *, env: dict[str, str] | None = None, stdin: bytes | None = None,
            timeout: float | None = None) -> Result(rc: int, stdout: bytes, stderr: bytes)
    with ssh.stream(argv, *, env=None) as s:    # s.stdout: readable binary file
        s.stdin.write(b"..."); s.stdin.close()  # s.stdin: writable; close() sends EOF
        data = s.stdout.read(); rc = s.exit_status()   # s.stderr_tail(): last 64 KiB of stderr
    with ssh.tunnel(remote_host: str, remote_port: int) as (local_host, local_port):
        ...                                     # 127.0.0.1:<free port> -> remote_host:remote_port as seen from the VPS
    ssh.close()
    ssh = session_for(ctx)   # in a step: the run's shared session (ctx.resource("ssh:source"))

Behaviour:
- Host, port, user and key come from the runbook's `environment.source.ssh`, else from `~/.ssh/config`
  (or `config_file`): Host aliases, HostName, Port, User, IdentityFile, UserKnownHostsFile,
  ProxyJump (a chain `a,b` in full: a direct-tcpip channel through each hop in turn) and ProxyCommand.
- Authentication: the key files and, alongside them, ssh-agent (`use_agent`, default on). A key that
  needs a passphrase is never prompted for: usable through the agent only, else one line saying so.
- Host keys are checked against ONE known_hosts file (`known_hosts`, else UserKnownHostsFile, else
  ~/.ssh/known_hosts) with paramiko's RejectPolicy. An unknown or changed key is a PermanentError naming
  the host and the file. `accept_unknown_host_key: true` (rehearsals only) records an unknown key in that
  file (ssh_target.accept_new_host_key_policy); a CHANGED key is always refused.
- Keepalives every `keepalive_s`. A dropped connection is re-opened on next use with backoff; a command
  cut off mid-way raises TemporaryError (the engine retries the step; steps must be resumable).
- Secrets never go into argv: `env` is sent on the command's stdin as a small shell script that a
  POSIX `sh` on the VPS reads (up to a random end marker), evaluates, then `exec`s the argv, so the
  remaining stdin belongs to the command.
- Sessions: sshd refuses a connection's sessions (channels running a command) past its MaxSessions
  (OpenSSH: 10) with "open failed: Connect failed". At most `max_sessions` are open at once; past that,
  holders of idle ones (pooled Docker API connections, kept-open psql sessions: see
  `add_idle_releaser`) give theirs up, else the opener waits (up to `SESSION_WAIT_S`). A refused session
  is never taken for a dead connection: the other channels on it carry on.
- Errors (unreachable, refused auth, unknown key) are one line naming the host and what to do.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import structlog

from migrator.adapters import remoteproc, resources, ssh_tunnel
from migrator.adapters.lazy import lazy
from migrator.adapters.ssh_target import (
    Target,
    accept_new_host_key_policy,
    jump_hops,
    locked_message,
    needs_passphrase,
    parse_jump,
    resolve_target,
)
from migrator.errors import PermanentError, TemporaryError
from migrator.runbook.environment import SSHConfig

if TYPE_CHECKING:
    import paramiko
    from paramiko import SSHException as SSHException  # re-exported: the steps never import paramiko
else:
    paramiko = lazy("paramiko")

__all__ = ["Result", "SSHException", "SSHSession", "Target", "command_line", "resolve_target", "session_for"]

STDERR_TAIL = 64 * 1024
SESSION_WAIT_S = 120.0  # how long an opener waits for a free session before the step is retried


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def text(self) -> str:
        return self.stdout.decode(errors="replace")

    def err_line(self) -> str:
        """The last lines of stderr (or stdout), for one-line error messages."""
        tail = (self.stderr or self.stdout).decode(errors="replace").strip().splitlines()[-3:]
        return " | ".join(tail)


class _Stream:
    """What `SSHSession.stream` yields: .stdout (readable), .stdin (writable; close() = EOF), .exit_status()."""

    def __init__(self, channel: paramiko.Channel, what: str) -> None:
        self.channel = channel
        self.what = what
        self.stdout: IO[bytes] = channel.makefile("rb")  # type: ignore[assignment]
        self.stdin: IO[bytes] = channel.makefile_stdin("wb")  # type: ignore[assignment]
        self._stderr = bytearray()
        # Drain stderr concurrently: a full stderr window would stall the remote command.
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        f = self.channel.makefile_stderr("rb")
        while True:
            try:
                chunk = f.read(32768)
            except Exception:
                return
            if not chunk:
                return
            self._stderr += chunk
            del self._stderr[:-STDERR_TAIL]

    def exit_status(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.channel.exit_status_ready():
            if self.channel.closed and not self.channel.exit_status_ready():
                raise TemporaryError(f"{self.what}: the SSH connection dropped before the command ended")
            transport = self.channel.get_transport()
            if transport is None or not transport.is_active():
                raise TemporaryError(f"{self.what}: the SSH connection dropped before the command ended")
            if deadline is not None and time.monotonic() > deadline:
                raise TemporaryError(f"{self.what}: no exit status after {timeout:g}s")
            time.sleep(0.02)
        self._drain.join(timeout=2)
        return int(self.channel.recv_exit_status())

    def stderr_tail(self) -> bytes:
        return bytes(self._stderr)


class SSHSession:
    """A paramiko connection to the VPS, re-opened on demand after a drop."""

    def __init__(self, target: Target, *, accept_unknown: bool = False, keepalive_s: int = 15,
                 connect_timeout_s: float = 10, reconnect_attempts: int = 3, base_dir: Path | None = None,
                 max_sessions: int = 10) -> None:
        self.target = target
        self.max_sessions = max_sessions
        self.session_wait_s = SESSION_WAIT_S
        self._sessions: list[paramiko.Channel] = []  # session channels opened here, pruned when closed
        self._sessions_lock = threading.Lock()
        self._opening = 0  # slots reserved by opens under way (see _reserve)
        self._idle_releasers: list[Callable[[], None]] = []
        self.sessions_peak = 0  # most sessions open at once (the log line at close; tests)
        self.session_waits = 0  # opens that found every session in use, or were refused by sshd
        self.accept_unknown = accept_unknown
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_attempts = reconnect_attempts
        self.base_dir = base_dir or Path.cwd()
        self._client: paramiko.SSHClient | None = None
        self._jump: SSHSession | None = None
        self._lock = threading.RLock()
        self.connects = 0  # how many times a connection was opened (tests, reports)
        # The resource key this session is known by (resources.SSH_SOURCE): its commands are then recorded
        # in the running step's state (remoteproc), to be found again over it on resume.
        self.via: str | None = None

    @classmethod
    def from_config(cls, cfg: SSHConfig, base_dir: Path) -> SSHSession:
        return cls(resolve_target(cfg, base_dir), accept_unknown=cfg.accept_unknown_host_key,
                   keepalive_s=cfg.keepalive_s, connect_timeout_s=cfg.connect_timeout_s,
                   reconnect_attempts=cfg.reconnect_attempts, base_dir=base_dir, max_sessions=cfg.max_sessions)

    # -- connection ------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.target.label

    def client(self) -> paramiko.SSHClient:
        """The live client, connecting (or reconnecting, with backoff) when needed."""
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return self._client
                self._client.close()
                self._client = None
            delay = 0.2
            for attempt in range(self.reconnect_attempts + 1):
                try:
                    self._client = self._connect()
                    return self._client
                except TemporaryError:
                    if attempt >= self.reconnect_attempts:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 5)
            raise AssertionError("unreachable")

    def transport(self) -> paramiko.Transport:
        transport = self.client().get_transport()
        assert transport is not None
        return transport

    def _sock(self) -> Any:
        t = self.target
        hops = jump_hops(t.proxy_jump or "")
        if hops:
            # The last hop is the one that opens the channel to us; it is reached through the hops
            # before it (its own ProxyJump), so `a,b` goes a -> b -> here, as OpenSSH does.
            user, host, port = parse_jump(hops[-1])
            assert t.config is not None
            jump_cfg = t.config.model_copy(update={"host": host, "port": None, "user": None, "key_file": None,
                                                   "proxy_jump": None})
            jt = resolve_target(jump_cfg, self.base_dir, alias=host)
            jt.known_hosts = t.known_hosts  # one known_hosts file for the whole path
            if user:
                jt.user = user
            if port:
                jt.port = port
            if not jt.key_files:
                jt.key_files = t.key_files
            jt.use_agent = t.use_agent
            if len(hops) > 1:
                jt.proxy_jump, jt.proxy_command = ",".join(hops[:-1]), None
            if self._jump is None:
                self._jump = SSHSession(jt, accept_unknown=self.accept_unknown, keepalive_s=self.keepalive_s,
                                        connect_timeout_s=self.connect_timeout_s,
                                        reconnect_attempts=self.reconnect_attempts, base_dir=self.base_dir)
            try:
                return self._jump.transport().open_channel("direct-tcpip", (t.hostname, t.port), ("127.0.0.1", 0),
                                                           timeout=self.connect_timeout_s)
            except paramiko.ChannelException as exc:
                raise TemporaryError(f"ssh {t.label}: jump host {jt.label} cannot reach it: {exc}") from None
        if t.proxy_command:
            command = t.proxy_command.replace("%h", t.hostname).replace("%p", str(t.port)).replace("%r", t.user)
            return paramiko.ProxyCommand(command)
        return None

    def _connect(self) -> paramiko.SSHClient:
        t = self.target
        client = paramiko.SSHClient()
        if t.known_hosts.is_file():
            client.load_host_keys(str(t.known_hosts))
        policy: paramiko.MissingHostKeyPolicy = (
            accept_new_host_key_policy(t.known_hosts) if self.accept_unknown else paramiko.RejectPolicy())
        client.set_missing_host_key_policy(policy)
        keys = [os.path.expanduser(k) for k in t.key_files]
        for k in keys:
            if not os.path.isfile(k):
                raise PermanentError(f"ssh {t.label}: key file {k} does not exist; fix key_file in the runbook "
                                     "or IdentityFile in ~/.ssh/config")
        # A key that needs a passphrase is never prompted for (a migration runs unattended): it can only
        # be used through ssh-agent, so it is left out of the key files and the agent is asked instead.
        locked = [k for k in keys if needs_passphrase(k)]
        keys = [k for k in keys if k not in locked]
        agent = t.use_agent and bool(os.environ.get("SSH_AUTH_SOCK"))
        if locked and not keys and not agent:
            client.close()
            raise PermanentError(locked_message(t, locked))
        try:
            client.connect(t.hostname, port=t.port, username=t.user, key_filename=keys or None,  # type: ignore[arg-type]
                           timeout=self.connect_timeout_s, banner_timeout=self.connect_timeout_s,
                           auth_timeout=self.connect_timeout_s, allow_agent=agent,
                           look_for_keys=not keys and not locked, sock=self._sock())
        except paramiko.BadHostKeyException:
            client.close()
            raise PermanentError(
                f"ssh {t.label}: the host key of {t.key_label} CHANGED from the one in {t.known_hosts}; "
                "this may be an attack: verify the new fingerprint out of band before replacing the entry"
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            if locked:
                raise PermanentError(locked_message(t, locked)) from None
            tried = ", ".join(keys) or "(default keys)"
            raise PermanentError(
                f"ssh {t.label}: authentication refused for user {t.user!r} with key {tried}"
                f"{' and the ssh-agent' if agent else ''}; check user and key_file "
                "(the public key must be in the VPS's authorized_keys)"
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise PermanentError(
                    f"ssh {t.label}: unknown host key for {t.key_label}: not in {t.known_hosts}; verify the "
                    f"fingerprint and add it (ssh-keyscan -p {t.port} {t.hostname} >> {t.known_hosts}), or set "
                    "accept_unknown_host_key: true for a rehearsal"
                ) from None
            if "No authentication methods available" in str(exc):  # no key file and nothing in the agent
                raise PermanentError(locked_message(t, locked) if locked else (
                    f"ssh {t.label}: no key to offer: set key_file in the runbook (or IdentityFile in "
                    "~/.ssh/config), or load one into ssh-agent")) from None
            raise TemporaryError(f"ssh {t.label}: {exc}; is sshd running there?") from None
        except (OSError, EOFError) as exc:
            client.close()
            errors = getattr(exc, "errors", None)  # paramiko's NoValidConnectionsError: one OSError per address
            first = next(iter(errors.values())) if errors else exc
            reason = first.strerror if isinstance(first, OSError) and first.strerror else (str(exc) or exc.__class__.__name__)
            raise TemporaryError(f"ssh {t.label}: cannot connect: {reason}; is the host up, sshd running and "
                                 "the address/port right?") from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(self.keepalive_s)
        self.connects += 1
        return client

    def close(self) -> None:
        if self.connects:
            structlog.get_logger("migrator.ssh").info("ssh connection closed", host=self.label,
                                                      connects=self.connects, sessions_peak=self.sessions_peak,
                                                      max_sessions=self.max_sessions, session_waits=self.session_waits)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._jump is not None:
                self._jump.close()
                self._jump = None

    # -- commands --------------------------------------------------------------------------------
    def _open(self, argv: list[str], env: dict[str, str] | None, timeout: float | None) -> tuple[paramiko.Channel, bytes]:
        """Open a channel running argv; returns it and the env preamble to send on its stdin first."""
        command, preamble = command_line(argv, env)
        channel = self._exec(command, timeout, f"could not start {argv[0]}")
        if preamble:
            try:
                channel.sendall(preamble)
            except (OSError, EOFError, paramiko.SSHException) as exc:  # ended at once: "Socket is closed"
                channel.close()
                raise TemporaryError(f"ssh {self.label}: {argv[0]} ended before its input was sent: "
                                     f"{exc or 'connection lost'}") from None
        return channel, preamble

    def _exec(self, command: str, timeout: float | None, what: str, spare: bool = False) -> paramiko.Channel:
        deadline = time.monotonic() + self.session_wait_s
        while True:
            channel = self.open_session(spare=spare, deadline=deadline)
            try:
                channel.settimeout(timeout)
                channel.exec_command(command)
                return channel
            except (paramiko.SSHException, OSError, EOFError) as exc:
                channel.close()
                if not self.transport_alive():
                    self._drop()
                    raise TemporaryError(f"ssh {self.label}: {what}: {exc or 'connection lost'}") from None
                # sshd closed this channel at the exec request (as it does when its sessions are all in
                # use): another channel, once one is free.
                if spare or time.monotonic() > deadline:
                    raise TemporaryError(f"ssh {self.label}: {what}: {exc or 'channel closed'}") from None
                self._release_idle()
                time.sleep(0.1)

    # -- sessions --------------------------------------------------------------------------------
    def add_idle_releaser(self, release: Callable[[], None]) -> None:
        """`release` closes the idle session channels its owner keeps (they reopen on next use); called
        when every session is in use."""
        with self._sessions_lock:
            self._idle_releasers.append(release)

    def remove_idle_releaser(self, release: Callable[[], None]) -> None:
        with self._sessions_lock:
            with contextlib.suppress(ValueError):
                self._idle_releasers.remove(release)

    def sessions_open(self) -> int:
        with self._sessions_lock:
            self._sessions = [c for c in self._sessions if not c.closed]
            return len(self._sessions)

    def _reserve(self) -> bool:
        """Take one of the max_sessions slots for a channel about to be opened, or say none is free. Count
        and reservation under one lock: threads opening at once (the steps of a parallel run, a copy's
        jobs) never open more than max_sessions between them."""
        with self._sessions_lock:
            self._sessions = [c for c in self._sessions if not c.closed]
            if len(self._sessions) + self._opening >= self.max_sessions:
                return False
            self._opening += 1
            return True

    def _unreserve(self) -> None:
        with self._sessions_lock:
            self._opening -= 1

    def _release_idle(self) -> None:
        with self._sessions_lock:
            releasers = list(self._idle_releasers)
        for release in releasers:
            with contextlib.suppress(Exception):  # freeing is best effort: waiting is the fallback
                release()

    def open_session(self, spare: bool = False, deadline: float | None = None) -> paramiko.Channel:
        """A new session channel, within max_sessions; waits for one to free up if need be (until
        `deadline`, a time.monotonic(); default session_wait_s from now). A `spare` (one opened ahead of
        need) is only opened when two are free, and never waits: TemporaryError at once."""
        if spare and self.sessions_open() + self._opening >= self.max_sessions - 1:
            raise TemporaryError(f"ssh {self.label}: no session to spare")
        if deadline is None:
            deadline = time.monotonic() + self.session_wait_s
        delay = 0.02
        refused = ""
        waited = False
        while True:
            if self._reserve():
                try:
                    transport = self.transport()
                except BaseException:
                    self._unreserve()
                    raise
                try:
                    channel = transport.open_session(timeout=self.connect_timeout_s)
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    self._unreserve()
                    if not transport.is_active():
                        self._drop()
                        raise TemporaryError(f"ssh {self.label}: could not open a channel: "
                                             f"{exc or 'connection lost'}") from None
                    # Refused by sshd (MaxSessions lower than max_sessions, or a slot not yet freed on its
                    # side; paramiko may report it as a bare SSHException when several threads open at
                    # once): the connection itself is fine.
                    refused = f"; sshd refused one: {exc!r}"
                except BaseException:
                    self._unreserve()
                    raise
                else:
                    with self._sessions_lock:
                        self._opening -= 1
                        self._sessions.append(channel)
                        self.sessions_peak = max(self.sessions_peak, len(self._sessions))
                        if waited:
                            self.session_waits += 1
                    return channel
            if spare:
                raise TemporaryError(f"ssh {self.label}: no session to spare{refused}")
            waited = True
            self._release_idle()
            if time.monotonic() > deadline:
                raise TemporaryError(
                    f"ssh {self.label}: all {self.max_sessions} sessions of the connection stayed in use for "
                    f"{self.session_wait_s:g}s{refused}; environment.source.ssh.max_sessions must not exceed the "
                    "VPS sshd's MaxSessions (OpenSSH default 10); fewer parallel jobs need fewer")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _drop(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _marked(self, argv: list[str], track: bool) -> tuple[list[str], Callable[[], None]]:
        """argv carrying MIGRATOR_PROC=<marker> in its environment, recorded in the running step's state
        (remoteproc); `done` drops the record once the command is known to have ended."""
        if not track or self.via is None:
            return argv, lambda: None
        marker, done = remoteproc.start(f"ssh {argv[0]}", self.via)
        return ["env", f"{remoteproc.MARKER_ENV}={marker}", *argv], done

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, stdin: bytes | None = None,
            timeout: float | None = None, track: bool = True) -> Result:
        """Run argv on the VPS; collect stdout and stderr. Never raises on a non-zero exit.

        `track=False`: not marked nor recorded (the search for processes of an earlier run itself)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        marked, done = self._marked(argv, track)
        channel, _ = self._open(marked, env, timeout)
        out, err = bytearray(), bytearray()
        feeder = None
        if stdin:
            def feed() -> None:
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    channel.sendall(stdin)
                    channel.shutdown_write()
            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
        else:
            channel.shutdown_write()
        try:
            # End on EOF, not on exit-status: OpenSSH may send the status before the last output.
            while not (channel.eof_received and not channel.recv_ready() and not channel.recv_stderr_ready()):
                if deadline is not None and time.monotonic() > deadline:
                    channel.close()
                    raise TemporaryError(f"ssh {self.label}: {argv[0]} timed out after {timeout:g}s")
                got = False
                if channel.recv_ready():
                    out += channel.recv(65536)
                    got = True
                if channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    got = True
                if not got:
                    if channel.closed or not self.transport_alive():
                        self._drop()
                        raise TemporaryError(f"ssh {self.label}: connection dropped while running {argv[0]}")
                    time.sleep(0.002)
            while not channel.exit_status_ready():
                if not self.transport_alive() or (deadline is not None and time.monotonic() > deadline):
                    raise TemporaryError(f"ssh {self.label}: no exit status from {argv[0]}")
                time.sleep(0.002)
        finally:
            if feeder is not None:
                feeder.join(timeout=1)
        rc = channel.recv_exit_status()
        channel.close()
        done()
        return Result(rc, bytes(out), bytes(err))

    def transport_alive(self) -> bool:
        client = self._client
        transport = client.get_transport() if client else None
        return bool(transport and transport.is_active())

    @contextlib.contextmanager
    def stream(self, argv: list[str], *, env: dict[str, str] | None = None) -> Iterator[_Stream]:
        """Run argv with its stdin and stdout as files, for transfers too big for memory."""
        marked, done = self._marked(argv, True)
        channel, _ = self._open(marked, env, None)
        s = _Stream(channel, f"ssh {self.label}: {argv[0]}")
        try:
            yield s
            if channel.exit_status_ready():
                done()  # ended: else the record stays, and a resume looks for it
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if not self.transport_alive():
                self._drop()
                raise TemporaryError(f"ssh {self.label}: connection dropped during {argv[0]}: {exc}") from None
            if channel.closed:  # the remote end closed this channel; a local error is re-raised as it is
                raise TemporaryError(f"ssh {self.label}: {argv[0]}'s channel closed: {exc}") from None
            raise
        finally:
            channel.close()

    def open_exec_channel(self, command: str, timeout: float | None = None, spare: bool = False) -> paramiko.Channel:
        """A raw channel running a shell command string (for adapters such as Docker's dial-stdio);
        `spare`: opened ahead of need (see open_session)."""
        return self._exec(command, timeout, "could not open a channel", spare=spare)

    # -- tunnels ---------------------------------------------------------------------------------
    def tunnel(self, remote_host: str, remote_port: int) -> contextlib.AbstractContextManager[tuple[str, int]]:
        """Forward a free 127.0.0.1 port to remote_host:remote_port as seen from the VPS."""
        return ssh_tunnel.tunnel(self.transport, remote_host, remote_port, self.connect_timeout_s)


def command_line(argv: list[str], env: dict[str, str] | None) -> tuple[str, bytes]:
    """The remote command string, and the stdin preamble carrying env (never in the command line)."""
    if not argv:
        raise ValueError("empty argv")
    if not env:
        return shlex.join(argv), b""
    for name in env:
        if not name.isidentifier():
            raise ValueError(f"bad environment variable name {name!r}")
    marker = f"__MIGRATOR_ENV_END_{secrets.token_hex(8)}__"
    script = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items()) + marker + "\n"
    # `read` consumes stdin one line at a time, so what follows the marker is left for the command.
    # "\n" below is a real newline inside the shell's quotes: values may span lines.
    reader = ('m=$1; shift; s=; while IFS= read -r l; do [ "$l" = "$m" ] && break; s="$s$l\n"; done; '
              'eval "$s"; exec "$@"')
    return shlex.join(["/bin/sh", "-c", reader, "sh", marker, *argv]), script.encode()


def session_for(ctx: Any) -> SSHSession:
    """The run's shared SSH session to the VPS (resources.SSH_SOURCE), from environment.source.ssh."""
    return resources.ssh_source(ctx.resource, ctx.runbook, ctx.step_id)


def __getattr__(name: str) -> Any:
    if name == "SSHException":  # read when a step catches it, so paramiko is imported only then
        return paramiko.SSHException
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
