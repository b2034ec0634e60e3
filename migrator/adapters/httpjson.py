"""A JSON GET against an application's own API, by its public name (Host header, and TLS SNI and
certificate check against that name when the URL is an address standing in for it)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse
from typing import Any

from migrator.errors import GateNotReady


class _NamedHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address, verified against another name (the public one the address stands for)."""

    def __init__(self, host: str, port: int, name: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._name, self._ctx = name, context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self._name)


def get_json(url: str, host_header: str | None = None, timeout: float = 10, tls_verify: bool = True) -> Any:
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise GateNotReady(f"{url!r} is not an http(s) URL")
    conn: http.client.HTTPConnection
    if u.scheme == "https":
        ctx = ssl.create_default_context()
        if not tls_verify:
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        conn = _NamedHTTPS(u.hostname, u.port or 443, host_header or u.hostname, timeout, ctx)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    where = f"{host_header or u.hostname}{path} via {u.hostname}:{u.port or ''}"
    try:
        conn.request("GET", path, headers={"Host": host_header} if host_header else {})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise GateNotReady(f"{where}: {exc.__class__.__name__}: {exc}") from None
    finally:
        conn.close()
    if resp.status != 200:
        raise GateNotReady(f"{where}: HTTP {resp.status}")
    try:
        return json.loads(body)
    except ValueError:
        raise GateNotReady(f"{where}: not JSON") from None
