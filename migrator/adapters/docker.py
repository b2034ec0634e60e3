"""The Docker API of the VPS, over our SSH session (same key, same known_hosts, same host-key policy).

Public API (consumed by other step types; keep it stable):

    from migrator.adapters.docker import DockerRemote

    dr = DockerRemote.from_config(source: SourceConfig, base_dir: Path, ssh: SSHSession | None = None)
    dr.client                         # docker.DockerClient (dr.client.api: docker.APIClient)
    dr.project_containers(project)    # list[Container] labelled com.docker.compose.project=project (all states)
    with dr.exec_stream(container, argv, env=None, user=None, stdin=False) as s:
        s.write(b"...")  ; s.close_stdin()      # only with stdin=True
        chunk = s.read(65536)                   # stdout only; b"" at the end
        rc = s.exit_code()                      # drains the rest, then asks exec_inspect
        s.stderr_tail()                         # last 64 KiB of stderr
    dr.close()
    dr = remote_for(ctx)  # in a step: the run's shared client (resources.DOCKER_SOURCE)

How: the SDK's own `ssh://` transport reads ~/.ssh/config and ~/.ssh/known_hosts by itself, so we
mount our own requests adapter on an APIClient: every HTTP connection is an SSH channel of our
SSHSession running `docker system dial-stdio` on the VPS (as `docker -H ssh://` does). Exec env
goes in the API request body, never in an argv. exec_stream hijacks its own dial-stdio channel
(HTTP Upgrade), so the stream is a plain byte pipe with stdin half-close.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.adapters import remoteproc, resources
from migrator.adapters.lazy import lazy
from migrator.adapters.ssh import STDERR_TAIL, SSHSession
from migrator.errors import PermanentError, TemporaryError
from migrator.runbook.environment import SourceConfig

if TYPE_CHECKING:
    import docker
    import docker.errors
    import paramiko
    import requests
    from docker.errors import NotFound as NotFound  # re-exported: the steps never import docker

    from migrator.adapters import docker_transport
else:
    docker = lazy("docker")
    paramiko = lazy("paramiko")
    requests = lazy("requests")
    docker_transport = lazy("migrator.adapters.docker_transport")  # urllib3 and docker's base adapter

BASE_URL = "http+docker://ssh"
API_TIMEOUT = 60


def dial_command(source: SourceConfig) -> str:
    argv = [source.docker_cli, "system", "dial-stdio"]
    if source.ssh.docker_host:  # not a secret: the daemon's socket on the VPS
        argv = ["env", f"DOCKER_HOST={source.ssh.docker_host}", *argv]
    return shlex.join(argv)


class _StartLost(Exception):
    """The channel of an exec ended before the Docker API answered its start."""


class ExecStream:
    """A hijacked exec: .read(n) gives stdout, .write(data) feeds stdin, .exit_code() from exec_inspect."""

    def __init__(self, remote: DockerRemote, exec_id: str, channel: paramiko.Channel, leftover: bytes,
                 what: str) -> None:
        self._remote, self.exec_id, self.channel, self.what = remote, exec_id, channel, what
        self._raw = bytearray(leftover)
        self._out = bytearray()
        self._stderr = bytearray()
        self._eof = False
        self.ended = False  # exit_code() saw the exec end

    def _fill(self) -> bool:
        """Read one more frame; False at the end of the stream."""
        while len(self._raw) < 8 or len(self._raw) < 8 + struct.unpack(">I", self._raw[4:8])[0]:
            if self._eof:
                return False
            try:
                chunk = self.channel.recv(262144)
            except TimeoutError:
                raise TemporaryError(f"{self.what}: no output for {self.channel.gettimeout()}s") from None
            if not chunk:
                self._eof = True
                if self._raw:
                    if not self._remote.ssh.transport_alive():
                        raise TemporaryError(f"{self.what}: the SSH connection dropped mid-stream")
                    raise TemporaryError(f"{self.what}: stream ended inside a frame")
                if not self._remote.ssh.transport_alive():
                    raise TemporaryError(f"{self.what}: the SSH connection dropped mid-stream")
                return False
            self._raw += chunk
        kind = self._raw[0]
        size = struct.unpack(">I", self._raw[4:8])[0]
        payload = bytes(self._raw[8:8 + size])
        del self._raw[:8 + size]
        if kind == 2:
            self._stderr += payload
            del self._stderr[:-STDERR_TAIL]
        else:
            self._out += payload
        return True

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._out) < n) and self._fill():
            if n > 0 and self._out:
                break  # a short read is fine for a stream
        take = len(self._out) if n < 0 else min(n, len(self._out))
        data = bytes(self._out[:take])
        del self._out[:take]
        return data

    def write(self, data: bytes) -> int:
        self.channel.sendall(data)
        return len(data)

    def close_stdin(self) -> None:
        self.channel.shutdown_write()

    def stderr_tail(self) -> bytes:
        return bytes(self._stderr)

    def exit_code(self, timeout: float = 30) -> int:
        while self._fill():
            self._out.clear()  # the caller did not want the rest
        deadline = time.monotonic() + timeout
        while True:
            info = self._remote.client.api.exec_inspect(self.exec_id)
            if not info.get("Running"):
                self.ended = True
                return int(info.get("ExitCode") or 0)
            if time.monotonic() > deadline:
                raise TemporaryError(f"{self.what}: still running {timeout:g}s after its output ended")
            time.sleep(0.05)

    def close(self) -> None:
        self.channel.close()


class DockerRemote:
    def __init__(self, source: SourceConfig, ssh: SSHSession, *, own_ssh: bool = True) -> None:
        self.source = source
        self.ssh = ssh
        self._own_ssh = own_ssh
        self.command = dial_command(source)
        self.host = ssh.label
        api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41", timeout=API_TIMEOUT)
        api.close()
        for prefix in list(api.adapters):
            api.adapters.pop(prefix)
        self.adapter = docker_transport.SessionAdapter(ssh, self.command, API_TIMEOUT)
        api.mount(BASE_URL, self.adapter)
        api.base_url = BASE_URL
        self.client: docker.DockerClient = docker.DockerClient.__new__(docker.DockerClient)
        self.client.api = api
        self._spare: Any = None  # a dial-stdio channel opened ahead of the next exec
        self._spare_lock = threading.Lock()
        # The resource key this API is known by (resources.DOCKER_SOURCE): its execs are then recorded in
        # the running step's state (remoteproc), to be found again in their container on resume.
        self.via: str | None = None
        ssh.add_idle_releaser(self.release_idle)
        self._connect()

    @classmethod
    def from_config(cls, source: SourceConfig, base_dir: Path, ssh: SSHSession | None = None) -> DockerRemote:
        if ssh is None:
            return cls(source, SSHSession.from_config(source.ssh, base_dir), own_ssh=True)
        return cls(source, ssh, own_ssh=False)

    def _connect(self) -> None:
        self.ssh.client()  # SSH errors (host key, auth, unreachable) come out as they are
        api = self.client.api
        try:
            api._version = api.version(api_version=False)["ApiVersion"]
        except Exception as exc:
            probe = self.ssh.run(["sh", "-c", f"{self.command} </dev/null"], timeout=15)
            reason = probe.err_line() or str(exc)
            raise PermanentError(
                f"docker on {self.host}: the Docker API does not answer ({reason}); is dockerd running there, "
                "and is DOCKER_HOST right for the SSH user (environment.source.ssh.docker_host)?"
            ) from None

    # -- queries ---------------------------------------------------------------------------------
    def project_containers(self, project: str) -> list[Any]:
        return list(self.client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}))

    def require_project(self, project: str) -> list[Any]:
        found = self.project_containers(project)
        if not found:
            names = sorted({c.labels.get("com.docker.compose.project", "") for c in self.client.containers.list(
                all=True, filters={"label": "com.docker.compose.project"})} - {""})
            raise PermanentError(f"docker on {self.host}: no container of compose project {project!r}"
                                 + (f" (projects there: {', '.join(names)})" if names else " (no compose project there)")
                                 + "; check environment.source.compose_project")
        return found

    # -- exec ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def exec_stream(self, container: str, argv: list[str], *, env: dict[str, str] | None = None,
                    user: str | None = None, stdin: bool = False, timeout: float = 300,
                    track: bool = True) -> Iterator[ExecStream]:
        """An exec in `container`; `track=False`: not marked nor recorded (remoteproc's own search)."""
        what = f"docker exec {argv[0]} in {container} on {self.host}"
        done: Callable[[], None] = lambda: None  # noqa: E731
        if track and self.via is not None:
            marker, done = remoteproc.start(f"docker exec {argv[0]}", self.via, container=container, user=user)
            env = {**(env or {}), remoteproc.MARKER_ENV: marker}
        for attempt in (1, 2):
            exec_id = self._exec_create(container, argv, env, user, stdin, what)
            # The second attempt opens its own channel: the spare may be what ended.
            channel = self._start_channel(timeout, spare=attempt == 1)
            try:
                leftover = self._start_exec(channel, exec_id, what)
                break
            except _StartLost as exc:
                channel.close()
                # A new exec, not this one again: it may have started with its stream gone (stdin at EOF,
                # output unread), and a second start of one exec is refused.
                if attempt == 2:
                    raise TemporaryError(f"{what}: the exec stream ended before the Docker API answered, "
                                         f"twice ({exc})") from None
        stream = ExecStream(self, exec_id, channel, leftover, what)
        try:
            yield stream
        finally:
            stream.close()
            if not stream.ended and self.via is not None and track:
                with contextlib.suppress(Exception):  # one question to the API: ended meanwhile?
                    stream.ended = not self.client.api.exec_inspect(exec_id).get("Running")
            if stream.ended:
                done()  # else the record stays, and a resume looks for it in the container

    def _start_exec(self, channel: paramiko.Channel, exec_id: str, what: str) -> bytes:
        """Start the exec on `channel` (HTTP Upgrade); the bytes read past the response head."""
        body = json.dumps({"Detach": False, "Tty": False}).encode()
        request = (f"POST /v{self.client.api._version}/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n"
                   "Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        head = bytearray()
        try:
            channel.sendall(request)
            while b"\r\n\r\n" not in head:
                chunk = channel.recv(4096)
                if not chunk:
                    raise _StartLost("closed")
                head += chunk
        except (OSError, EOFError, paramiko.SSHException) as exc:  # paramiko: "Socket is closed"
            raise _StartLost(str(exc) or exc.__class__.__name__) from None
        header, _, leftover = bytes(head).partition(b"\r\n\r\n")
        status = header.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status and " 200 " not in status:
            raise PermanentError(f"{what}: exec start refused: {status}")
        return leftover

    def _exec_create(self, container: str, argv: list[str], env: dict[str, str] | None, user: str | None,
                     stdin: bool, what: str) -> str:
        for attempt in (1, 2):
            try:
                created = self.client.api.exec_create(container, argv, stdout=True, stderr=True, stdin=stdin,
                                                      tty=False, environment=env or None, user=user or "")
                return str(created["Id"])
            except docker.errors.NotFound:
                raise PermanentError(f"{what}: no such container") from None
            except docker.errors.APIError as exc:
                raise PermanentError(f"{what}: {exc.explanation or exc}") from None
            except requests.exceptions.ConnectionError as exc:
                # Once more on a new connection: an exec created but never started does nothing.
                if attempt == 2:
                    raise TemporaryError(f"{what}: the Docker API connection failed twice "
                                         f"({exc.__class__.__name__})") from None
        raise AssertionError("not reached")

    def exec_run(self, container: str, argv: list[str], *, env: dict[str, str] | None = None,
                 user: str | None = None, input: bytes | None = None, track: bool = True) -> tuple[int, bytes, bytes]:
        """Run to completion and collect: (exit code, stdout, stderr tail)."""
        with self.exec_stream(container, argv, env=env, user=user, stdin=input is not None, track=track) as s:
            lost = None
            if input is not None:
                try:
                    s.write(input)
                    s.close_stdin()
                except OSError as exc:  # paramiko: "Socket is closed": the command ended early, or its channel
                    lost = exc
            out = s.read()
            rc = s.exit_code()
            if lost is not None and rc == 0:  # a failing command explains itself; a "success" that did not
                raise TemporaryError(f"docker exec {argv[0]} in {container} on {self.host}: its input "
                                     f"was cut short: {lost}")
            return rc, out, s.stderr_tail()

    def _start_channel(self, timeout: float, spare: bool = True) -> paramiko.Channel:
        """A dial-stdio channel for an exec's hijacked stream. Starting `docker system dial-stdio` on the VPS
        costs ~0.13 s, so the next one is opened in the background while this one is used: a copy runs
        dozens of short execs (catalog queries, one COPY per table) one after another."""
        channel = None
        if spare:
            with self._spare_lock:
                channel, self._spare = self._spare, None
        if channel is None or channel.closed or channel.exit_status_ready():
            channel = self.ssh.open_exec_channel(self.command, timeout=timeout)
        threading.Thread(target=self._prepare_spare, args=(timeout,), daemon=True).start()
        return channel

    def _prepare_spare(self, timeout: float) -> None:
        channel: paramiko.Channel | None
        try:
            channel = self.ssh.open_exec_channel(self.command, timeout=timeout, spare=True)
        except Exception:  # only an optimisation (and never worth a session another needs)
            return
        with self._spare_lock:
            if self._spare is None:
                self._spare, channel = channel, None
        if channel is not None:
            channel.close()

    def release_idle(self) -> None:
        """Give back the SSH sessions held idle: the spare exec channel and the unused API connections."""
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()
        self.adapter.release_idle()

    def close(self) -> None:
        self.ssh.remove_idle_releaser(self.release_idle)
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()
        with contextlib.suppress(Exception):
            self.client.api.close()
        if self._own_ssh:
            self.ssh.close()


def remote_for(ctx: Any) -> DockerRemote:
    """The run's shared Docker API of the VPS (resources.DOCKER_SOURCE), over the shared SSH session."""
    return resources.docker_source(ctx.resource, ctx.runbook, ctx.step_id)


def __getattr__(name: str) -> Any:
    if name == "NotFound":  # read when a step catches it, so docker is imported only then
        return docker.errors.NotFound
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
