"""Local port forwarding over an SSH transport: a free 127.0.0.1 port whose connections are carried,
each in its own direct-tcpip channel, to a host and port as seen from the VPS (`SSHSession.tunnel`)."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import paramiko


@contextlib.contextmanager
def tunnel(transport: Callable[[], paramiko.Transport], remote_host: str, remote_port: int,
           timeout: float) -> Iterator[tuple[str, int]]:
    """Forward a free 127.0.0.1 port to remote_host:remote_port; `transport` gives the live connection
    (re-opened after a drop), asked once per forwarded connection."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.5)
    stop = threading.Event()
    local = listener.getsockname()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=_forward, args=(transport, conn, peer, remote_host, remote_port, timeout, stop),
                             daemon=True).start()

    server = threading.Thread(target=serve, daemon=True, name=f"tunnel-{local[1]}")
    server.start()
    try:
        yield "127.0.0.1", int(local[1])
    finally:
        stop.set()
        listener.close()
        server.join(timeout=2)


def _forward(transport: Callable[[], paramiko.Transport], conn: socket.socket, peer: Any, host: str, port: int,
             timeout: float, stop: threading.Event) -> None:
    try:
        channel = transport().open_channel("direct-tcpip", (host, port), peer, timeout=timeout)
    except Exception:
        conn.close()
        return
    sel = selectors.DefaultSelector()
    sel.register(conn, selectors.EVENT_READ)
    sel.register(channel, selectors.EVENT_READ)
    try:
        while not stop.is_set():
            for key, _ in sel.select(timeout=0.5):
                if key.fileobj is conn:
                    data = conn.recv(65536)
                    if not data:
                        channel.shutdown_write()
                        sel.unregister(conn)
                        continue
                    channel.sendall(data)
                else:
                    data = channel.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            if channel.closed:
                return
    except OSError:
        return
    finally:
        sel.close()
        channel.close()
        conn.close()
