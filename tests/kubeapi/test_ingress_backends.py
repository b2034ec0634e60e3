"""The ingress stand-in reverse-proxies a Service mapped to a real HTTP server (`backends`), after routing
and the readiness check: 503 while the workload is not ready, 502 when the server does not answer."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from migrator.sandbox.kubeapi import FAIL_ANNOTATION, ServerHandle, spawn, start_server
from migrator.sandbox.kubeapi.ingress import parse_backend

from .conftest import deployment, wait_for


@dataclass
class Seen:
    requests: list[dict[str, Any]] = field(default_factory=list)


class EchoHandler(BaseHTTPRequestHandler):
    """Answers with what it received; `/status/NNN` answers that status; sets two cookies."""

    protocol_version = "HTTP/1.1"
    server: EchoServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        got = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
               "body": body.decode(errors="replace"), "echo": "real-backend"}
        self.server.seen.requests.append(got)
        parts = urllib.parse.urlsplit(self.path).path.split("/")
        status = int(parts[2]) if len(parts) > 2 and parts[1] == "status" else 200
        payload = json.dumps(got).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Backend", "echo")
        self.send_header("Set-Cookie", "a=1; Path=/")
        self.send_header("Set-Cookie", "b=2; Path=/")
        self.send_header("Keep-Alive", "timeout=5")  # hop-by-hop: must not come through
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _echo


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), EchoHandler)
        self.seen = Seen()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    kube: ServerHandle
    echo: EchoServer
    ns: str
    api: client.ApiClient
    exposed: set[str] = field(default_factory=set)

    def expose(self, name: str, *, ready: bool = True) -> str:
        """Deployment (failing unless `ready`) + Service + Ingress for `name` (once); returns the Ingress host."""
        host = f"{name}.{self.ns}.example.test"
        if name in self.exposed:
            return host
        self.exposed.add(name)
        client.CoreV1Api(self.api).create_namespaced_service(self.ns, {"metadata": {"name": name}, "spec": {
            "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}})
        client.NetworkingV1Api(self.api).create_namespaced_ingress(self.ns, {"metadata": {"name": name}, "spec": {
            "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": name, "port": {"number": 80}}}}]}}]}})
        annotations = None if ready else {FAIL_ANNOTATION: "CrashLoopBackOff: backend broken"}
        apps = client.AppsV1Api(self.api)
        apps.create_namespaced_deployment(self.ns, deployment(name, self.ns, annotations=annotations))
        wait_for(lambda: apps.read_namespaced_deployment(name, self.ns).status.observed_generation,
                 what=f"{name} observed")
        return host

    def request(self, method: str, path: str, host: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, chunked: bool = False) -> tuple[int, dict[str, str], Any,
                                                                                    list[tuple[str, str]]]:
        assert self.kube.ingress_url
        u = urllib.parse.urlsplit(self.kube.ingress_url)
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
        try:
            hdrs = {"Host": host, **(headers or {})}
            if chunked:
                conn.request(method, path, body=iter([body or b""]), headers=hdrs, encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            all_headers = resp.getheaders()
            try:
                data: Any = json.loads(raw) if raw else None
            except ValueError:
                data = raw.decode(errors="replace")
            return resp.status, {k.lower(): v for k, v in all_headers}, data, all_headers
        finally:
            conn.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    echo = EchoServer()
    echo.thread.start()
    ns = "px-" + uuid.uuid4().hex[:8]
    backends = {f"{ns}/web": ("127.0.0.1", int(echo.server_address[1])),
                f"{ns}/broken": ("127.0.0.1", int(echo.server_address[1])),
                f"{ns}/gone": ("127.0.0.1", _closed_port())}
    home = tmp_path_factory.mktemp("kubeapi-backends")
    kube = start_server("127.0.0.1", 0, ready_delay=0.1, kubeconfig_file=home / "kubeconfig",
                        ingress="127.0.0.1:0", backends=backends)
    try:
        assert kube.kubeconfig is not None
        api = config.new_client_from_config(config_file=str(kube.kubeconfig))
        client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        yield Env(kube, echo, ns, api)
    finally:
        kube.stop()
        echo.shutdown()
        echo.server_close()


def test_ready_backend_is_proxied(env: Env) -> None:
    host = env.expose("web")
    before = len(env.echo.seen.requests)
    code, headers, body, raw = env.request("GET", "/realms/x/thing?a=1&b=two", host + ":443",
                                           headers={"X-Custom": "yes", "Connection": "keep-alive, X-Drop",
                                                    "X-Drop": "hop"})
    assert code == 200, body
    assert body["echo"] == "real-backend" and body["method"] == "GET"
    assert body["path"] == "/realms/x/thing?a=1&b=two"
    sent = body["headers"]
    assert sent["Host"] == host + ":443"  # the Host header goes through as the client sent it
    assert sent["X-Custom"] == "yes"
    assert "X-Drop" not in sent and "Connection" not in sent  # named by Connection: hop-by-hop
    assert sent["X-Forwarded-Host"] == host + ":443" and sent["X-Forwarded-Proto"] == "http"
    assert headers["x-backend"] == "echo" and headers["content-type"] == "application/json"
    assert [v for k, v in raw if k.lower() == "set-cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    assert "keep-alive" not in headers  # hop-by-hop headers stay on their hop
    assert len(env.echo.seen.requests) == before + 1
    # the backend's status comes through as it is, errors included
    assert env.request("GET", "/status/418", host)[0] == 418
    code, _, body, _ = env.request("GET", "/status/404", host)
    assert code == 404 and body["path"] == "/status/404"
    code, headers, body, _ = env.request("HEAD", "/health", host)
    assert code == 200 and body is None and int(headers["content-length"]) > 0


def test_post_body_and_authorization_reach_backend(env: Env) -> None:
    host = env.expose("web")
    form = b"grant_type=client_credentials&client_id=smoke&client_secret=s3cr3t"
    code, _, body, _ = env.request("POST", "/realms/sevensa/protocol/openid-connect/token", host, body=form,
                                   headers={"Authorization": "Bearer tok-123",
                                            "Content-Type": "application/x-www-form-urlencoded"})
    assert code == 200, body
    assert body["method"] == "POST" and body["body"] == form.decode()
    assert body["headers"]["Authorization"] == "Bearer tok-123"
    assert body["headers"]["Content-Length"] == str(len(form))
    assert body["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    # a chunked request body is de-chunked and sent on with a Content-Length
    code, _, body, _ = env.request("PUT", "/admin/thing", host, body=b'{"k": "v"}', chunked=True,
                                   headers={"Authorization": "Basic YWRtaW46cHc="})
    assert code == 200 and body["method"] == "PUT" and body["body"] == '{"k": "v"}'
    assert body["headers"]["Authorization"] == "Basic YWRtaW46cHc="
    assert "Transfer-Encoding" not in body["headers"]
    # the connection to the ingress stays usable after a proxied answer (keep-alive)
    assert env.kube.ingress_url
    u = urllib.parse.urlsplit(env.kube.ingress_url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
    try:
        for i in range(3):
            conn.request("POST", f"/n/{i}", body=f"body-{i}".encode(), headers={"Host": host})
            resp = conn.getresponse()
            got = json.loads(resp.read())
            assert resp.status == 200 and got["path"] == f"/n/{i}" and got["body"] == f"body-{i}"
    finally:
        conn.close()


def test_not_ready_backend_is_503_and_not_proxied(env: Env) -> None:
    host = env.expose("broken", ready=False)
    before = len(env.echo.seen.requests)
    code, _, body, _ = env.request("POST", "/anything", host, body=b"x=1", headers={"Authorization": "Bearer t"})
    assert code == 503
    assert "CrashLoopBackOff: backend broken" in body["error"] and body["service"] == f"{env.ns}/broken"
    assert len(env.echo.seen.requests) == before  # the real server was never asked


def test_backend_that_does_not_answer_is_502(env: Env) -> None:
    host = env.expose("gone")
    code, headers, body, _ = env.request("GET", "/health", host)
    assert code == 502
    assert headers["content-type"] == "application/json"
    assert body["service"] == f"{env.ns}/gone" and body["standin"] == "kube-ingress"
    assert "did not answer" in body["error"] and body["backend"].startswith("127.0.0.1:")


def test_unmapped_service_keeps_the_generic_answer(env: Env) -> None:
    host = env.expose("plain")
    code, _, body, _ = env.request("GET", "/health", host)
    assert code == 200 and body["standin"] == "kube-ingress" and body["workload"] == "deployment/plain"
    assert env.request("GET", "/", "nobody.example.test")[0] == 404


@pytest.mark.parametrize("addr", ["10.0.0.5", "192.168.1.1", "8.8.8.8", "::1", "localhost", "0.0.0.0"])
def test_only_loopback_backends_are_accepted(addr: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        start_server("127.0.0.1", 0, ingress="127.0.0.1:0", backends={"ns/svc": (addr, 8080)})
    with pytest.raises(ValueError):
        spawn(tmp_path, _closed_port(), backends={"ns/svc": (addr, 8080)})
    assert not (tmp_path / "kubeapi.pid").exists()
    with pytest.raises(ValueError):
        parse_backend(f"ns/svc={addr}:8080")


def test_backend_flag_parsing() -> None:
    assert parse_backend("infra/keycloak=127.0.0.1:28080") == ("infra/keycloak", ("127.0.0.1", 28080))
    assert parse_backend("a/b=127.3.4.5:1") == ("a/b", ("127.3.4.5", 1))
    for bad in ("infra/keycloak", "keycloak=127.0.0.1:1", "a/b=127.0.0.1", "a/b=127.0.0.1:x", "a/b/c=127.0.0.1:1"):
        with pytest.raises(ValueError):
            parse_backend(bad)
    cp = subprocess.run([sys.executable, "-m", "migrator.sandbox.kubeapi", "--listen", "127.0.0.1:0",
                         "--kubeconfig", "/nonexistent/kubeconfig", "--backend", "infra/keycloak=10.1.2.3:80"],
                        capture_output=True, text=True, timeout=60, check=False)
    assert cp.returncode != 0 and "127.0.0.0/8" in cp.stderr
