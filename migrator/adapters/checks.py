"""The generic health checks a gate may list beside a step's own verify (http, tcp)."""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.parse

from migrator.errors import GateNotReady
from migrator.runbook.model import GateCheck, HttpCheck, TcpCheck


def http_check(check: HttpCheck) -> str:
    url = urllib.parse.urlsplit(check.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise GateNotReady(f"http check: {check.url!r} is not an http(s) URL")
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        context = ssl.create_default_context()
        if not check.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=check.timeout_s, context=context)
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=check.timeout_s)
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    headers = {"Host": check.host_header} if check.host_header else {}
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(65536).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        raise GateNotReady(f"GET {check.url}: {exc.__class__.__name__}: {exc}") from None
    finally:
        conn.close()
    if resp.status not in check.expect_status:
        raise GateNotReady(f"GET {check.url}: status {resp.status}, expected {check.expect_status}")
    if check.expect_body is not None and check.expect_body not in body:
        raise GateNotReady(f"GET {check.url}: body does not contain {check.expect_body!r}")
    return f"GET {check.url}: {resp.status}"


def tcp_check(check: TcpCheck) -> str:
    try:
        with socket.create_connection((check.host, check.port), timeout=check.timeout_s):
            return f"tcp {check.host}:{check.port} open"
    except OSError as exc:
        raise GateNotReady(f"tcp {check.host}:{check.port}: {exc.strerror or exc}") from None


def run_gate_check(check: GateCheck) -> str:
    if check.http is not None:
        return http_check(check.http)
    assert check.tcp is not None
    return tcp_check(check.tcp)
