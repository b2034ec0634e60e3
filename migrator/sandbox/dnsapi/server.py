"""An HTTPS server on 127.0.0.1 for the DNS API stand-ins: JSON in, JSON out, one handler per API."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Request:
    def __init__(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> None:
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)


Response = tuple[int, Any]  # status, JSON body (None: no body)
App = Callable[[Request], Response]


class ApiServer:
    """Serve `app` over HTTPS with `cert`/`key` on 127.0.0.1 (a free port unless given)."""

    def __init__(self, app: App, cert: Path, key: Path, port: int = 0) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []  # (method, path) seen, for the tests
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body)
                outer.requests.append((self.command, parts.path))
                try:
                    status, payload = outer.app(req)
                except Exception as exc:  # a stand-in bug answers 500, as a broken API would
                    status, payload = 500, {"error": f"{exc.__class__.__name__}: {exc}"}
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="dns-api-standin")

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> ApiServer:
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
