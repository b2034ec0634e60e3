"""Fixtures: real HTTP servers on 127.0.0.1 (fast, slow, failing, Prometheus-shaped) and the kube stand-in."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Route:
    status: int = 200
    delay_s: float = 0.0
    body: Any = field(default_factory=lambda: {"status": "ok"})


@dataclass
class Server:
    """A stdlib HTTP/1.1 server answering by Host header (routes[host]) or path (routes[path])."""

    port: int
    routes: dict[str, Route]
    hits: list[tuple[str, str]] = field(default_factory=list)  # (host, path)
    connections: list[int] = field(default_factory=list)  # one entry per accepted connection

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            server.connections.append(1)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            path = self.path.split("?", 1)[0]
            server.hits.append((host, path))
            route = server.routes.get(host) or server.routes.get(path) or server.routes.get("*")
            if route is None:
                route = Route(404, body={"error": f"no route for {host}{path}"})
            if route.delay_s:
                time.sleep(route.delay_s)
            payload = route.body if isinstance(route.body, bytes) else json.dumps(route.body).encode()
            self.send_response(route.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def http_server() -> Iterator[Callable[[dict[str, Route]], Server]]:
    """start(routes) -> Server on a free 127.0.0.1 port; every server is stopped at the end."""
    started: list[ThreadingHTTPServer] = []

    def start(routes: dict[str, Route]) -> Server:
        srv = Server(0, routes)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(srv))
        httpd.daemon_threads = True
        srv.port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(httpd)
        return srv

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def kubeapi(tmp_path: Path) -> Iterator[Any]:
    """The Kubernetes API stand-in in this process, with its ingress stand-in on a free loopback port."""
    from migrator.sandbox.kubeapi import start_server

    handle = start_server(ready_delay=0.1, kubeconfig_file=tmp_path / "kubeconfig", ingress="127.0.0.1:0")
    try:
        yield handle
    finally:
        handle.stop()


def kube_create(handle: Any, obj: dict[str, Any]) -> None:
    """POST an object to the stand-in (plain HTTP: the stand-in is on loopback)."""
    import urllib.request

    from migrator.adapters.kube import Ref

    ref = Ref.of(obj)
    url = handle.url + ref.path().rsplit("/", 1)[0]
    req = urllib.request.Request(url, data=json.dumps(obj).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status in (200, 201), resp.read()


def target_env(kubeconfig: Path, ingress_port: int = 18080) -> dict[str, Any]:
    return {"target": {"kubeconfig": str(kubeconfig), "ingress_address": "127.0.0.1", "ingress_port": ingress_port,
                       "ingress_scheme": "http"}}
