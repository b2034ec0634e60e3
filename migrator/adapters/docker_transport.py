"""The Docker SDK's HTTP transport over an SSH session: a requests adapter whose connections are SSH
channels of one `SSHSession`, each running `docker system dial-stdio` on the VPS (as `docker -H ssh://`
does). Imported by `docker.DockerRemote` when it makes its client (urllib3 and the SDK are heavy).
"""

from __future__ import annotations

import contextlib
import queue
from typing import TYPE_CHECKING, Any

import urllib3
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from docker.transport.basehttpadapter import BaseHTTPAdapter

if TYPE_CHECKING:
    from migrator.adapters.ssh import SSHSession


class _DialConnection(urllib3.connection.HTTPConnection):
    def __init__(self, ssh: SSHSession, command: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._ssh, self._command, self._timeout = ssh, command, timeout

    def connect(self) -> None:
        self.sock = self._ssh.open_exec_channel(self._command, timeout=self._timeout)


class _DialPool(urllib3.connectionpool.HTTPConnectionPool):
    scheme = "ssh"

    def __init__(self, ssh: SSHSession, command: str, timeout: float, maxsize: int) -> None:
        super().__init__("localhost", timeout=timeout, maxsize=maxsize)
        self._ssh, self._command, self._timeout = ssh, command, timeout

    def _new_conn(self) -> _DialConnection:
        return _DialConnection(self._ssh, self._command, self._timeout)

    # A reused SSH channel would make urllib3 call fileno() repeatedly (one pipe each): take a pooled
    # connection or make a new one, as docker's own SSHConnectionPool does.
    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = None
        try:
            conn = self.pool.get(block=self.block, timeout=timeout)  # type: ignore[union-attr]
        except AttributeError:
            raise urllib3.exceptions.ClosedPoolError(self, "Pool is closed.") from None
        except queue.Empty:
            if self.block:
                raise urllib3.exceptions.EmptyPoolError(self, "Pool reached maximum size.") from None
        if conn is not None and _dropped(conn):
            # Its dial-stdio ended while pooled (the daemon closed an idle connection): a request sent
            # on it would fail with "Remote end closed connection without response".
            conn.close()
            conn = None
        return conn or self._new_conn()


def _dropped(conn: Any) -> bool:
    """urllib3's own check polls the socket's fileno(), which for an SSH channel makes a pipe each time;
    the channel says itself whether its far end is gone."""
    channel = getattr(conn, "sock", None)
    if channel is None:
        return False  # not connected yet: connects on first use
    return bool(channel.closed or channel.eof_received or channel.exit_status_ready())


class SessionAdapter(BaseHTTPAdapter):  # type: ignore[misc]
    """A requests adapter whose connections are SSH channels of one SSHSession."""

    def __init__(self, ssh: SSHSession, command: str, timeout: float, maxsize: int = 4) -> None:
        self.ssh, self.command, self.timeout, self.maxsize = ssh, command, timeout, maxsize
        self.pools: dict[str, _DialPool] = {}
        self._transport: Any = None
        super().__init__()

    def get_connection(self, url: Any, proxies: Any = None) -> _DialPool:
        transport = self.ssh.transport()  # reconnects after a drop
        if transport is not self._transport:  # pooled channels died with the old transport
            for pool in self.pools.values():
                pool.close()
            self.pools.clear()
            self._transport = transport
        key = str(url).split("/v1", 1)[0]
        if key not in self.pools:
            self.pools[key] = _DialPool(self.ssh, self.command, self.timeout, self.maxsize)
        return self.pools[key]

    def release_idle(self) -> None:
        """Close the pooled connections not in use (each holds an SSH session); they reconnect on next use."""
        for pool in list(self.pools.values()):
            idle = []
            with contextlib.suppress(queue.Empty, AttributeError):  # AttributeError: the pool was closed
                while True:
                    idle.append(pool.pool.get(block=False))  # type: ignore[union-attr]
            for conn in idle:
                if conn is not None:
                    conn.close()
            for _ in idle:
                with contextlib.suppress(queue.Full, AttributeError):
                    pool.pool.put(None, block=False)  # type: ignore[union-attr]

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
