"""Shared bits of the stand-ins (stdlib only; copied into the stand-in image as /standins/common.py)."""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICE = os.environ.get("SERVICE_NAME", "standin")
VERSION = os.environ.get("SERVICE_VERSION", "1.0.0-sandbox")
PORT = int(os.environ.get("PORT", "8080"))
HEALTH_PATHS = {"/health", "/healthz", "/ready", "/-/healthy", "/-/ready", "/api/health", "/ping", "/livez"}


class Handler(BaseHTTPRequestHandler):
    server_version = "sevensa-standin/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        if os.environ.get("STANDIN_ACCESS_LOG"):
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_text(self, status, text, ctype="text/plain; charset=utf-8"):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def version_doc(self):
        return {"service": SERVICE, "version": VERSION, "standin": True}

    def basic(self):
        """Answer the health/version paths every stand-in has; return True when answered."""
        path = self.path.split("?", 1)[0]
        if path in HEALTH_PATHS:
            self.send_json(200, {"status": "ok", "service": SERVICE, "standin": True})
            return True
        if path == "/version":
            self.send_json(200, self.version_doc())
            return True
        return False


def serve(handler_cls, port=PORT):
    httpd = ThreadingHTTPServer(("0.0.0.0", port), handler_cls)
    httpd.daemon_threads = True

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
