"""Ingress stand-in: routes by Host header using the Ingress objects in the store and answers for the
backend Service's workload, 200 when it is ready and 503 when it is not. A Service mapped to a real HTTP
server (`backends`, "ns/svc" -> loopback host:port) is reverse-proxied to it once its workload is ready."""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .prometheus import Scraper, is_prometheus
from .resources import DAEMONSET, DEPLOYMENT, INGRESS, SERVICE, STATEFULSET
from .selectors import selector_matches
from .simulator import Simulator, is_ready
from .store import Store

log = logging.getLogger("migrator.sandbox.kubeapi.ingress")

#: seconds a proxied backend has to answer (connect and whole response)
PROXY_TIMEOUT = 30.0
#: RFC 9110 7.6.1 hop-by-hop headers: never forwarded either way
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "transfer-encoding", "upgrade"})
MAX_BODY = 64 * 1024 * 1024

Backend = tuple[str, int]


def check_backend(key: str, host: str, port: int) -> Backend:
    """Validate one `ns/svc -> host:port` mapping: an IPv4 address in 127.0.0.0/8 and a port 1-65535."""
    ns, sep, svc = key.partition("/")
    if not sep or not ns or not svc or "/" in svc:
        raise ValueError(f"backend key must be NAMESPACE/SERVICE, got {key!r}")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError(f"backend {key}: {host!r} is not an IP address (only 127.0.0.0/8)") from exc
    if not (isinstance(addr, ipaddress.IPv4Address) and addr in ipaddress.IPv4Network("127.0.0.0/8")):
        raise ValueError(f"backend {key}: only 127.0.0.0/8 backends are accepted, not {host}")
    if not 0 < int(port) < 65536:
        raise ValueError(f"backend {key}: bad port {port}")
    return str(addr), int(port)


def check_backends(backends: Mapping[str, Backend] | None) -> dict[str, Backend]:
    return {key: check_backend(key, host, port) for key, (host, port) in (backends or {}).items()}


def parse_backend(text: str) -> tuple[str, Backend]:
    """`NS/SVC=HOST:PORT` -> ("ns/svc", (host, port)); ValueError when malformed or not loopback."""
    key, sep, addr = text.partition("=")
    host, colon, port = addr.strip().rpartition(":")
    if not sep or not colon or not port.isdigit():
        raise ValueError(f"--backend expects NS/SVC=HOST:PORT, got {text!r}")
    key = key.strip()
    return key, check_backend(key, host, int(port))


def _host_matches(rule_host: str | None, host: str) -> bool:
    if not rule_host:
        return True
    if rule_host.startswith("*."):
        suffix = rule_host[1:]
        return host.endswith(suffix) and "." not in host[: -len(suffix)]
    return rule_host == host


def _path_matches(rule: dict[str, Any], path: str) -> int:
    """Length of the match (longest wins), -1 for no match."""
    want = str(rule.get("path") or "/")
    if rule.get("pathType") == "Exact":
        return len(want) if path == want else -1
    want_parts = [p for p in want.split("/") if p]
    have_parts = [p for p in path.split("/") if p]
    return len(want) if have_parts[: len(want_parts)] == want_parts else -1


def route(store: Store, host: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """(namespace, backend) for a request, or None when no Ingress rule matches."""
    best: tuple[int, int, str, dict[str, Any]] | None = None
    fallback: tuple[str, dict[str, Any]] | None = None
    for ing in store.select(INGRESS.key):
        ns, spec = ing["metadata"]["namespace"], ing.get("spec") or {}
        for rule in spec.get("rules") or []:
            if not _host_matches(rule.get("host"), host):
                continue
            for p in (rule.get("http") or {}).get("paths") or []:
                length = _path_matches(p, path)
                exact_host = 1 if rule.get("host") == host else 0
                if length >= 0 and (best is None or (exact_host, length) > best[:2]):
                    best = (exact_host, length, ns, p.get("backend") or {})
        if spec.get("defaultBackend") and fallback is None:
            fallback = (ns, spec["defaultBackend"])
    if best is not None:
        return best[2], best[3]
    return fallback


class IngressHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: IngressServer

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes; without this each response waits on delayed ACKs
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _read_body(self) -> bytes:
        """The request body (Content-Length or chunked); b"" when there is none."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def do_HEAD(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            request_body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._answer(400, {"error": f"bad request body: {exc}", "standin": "kube-ingress"})
            return
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        path = self.path.split("?", 1)[0]
        store = self.server.store
        found = route(store, host, path)
        if found is None:
            self._answer(404, {"host": host, "error": "no ingress rule matches this host", "standin": "kube-ingress"})
            return
        ns, backend = found
        svc_name = (backend.get("service") or {}).get("name", "")
        body: dict[str, Any] = {"host": host, "service": f"{ns}/{svc_name}", "path": path, "standin": "kube-ingress"}
        svc = store.get(SERVICE.key, ns, svc_name)
        if svc is None:
            self._answer(503, {**body, "workload": None, "error": "backend service not found"})
            return
        selector = (svc.get("spec") or {}).get("selector") or {}
        workloads = [w for res in (DEPLOYMENT, STATEFULSET, DAEMONSET) for w in store.select(res.key, ns)
                     if selector_matches(selector, ((w["spec"].get("template") or {}).get("metadata") or {})
                                         .get("labels") or {})]
        if not workloads:
            self._answer(503, {**body, "workload": None, "error": "no workload matches the service selector"})
            return
        ready = [w for w in workloads if is_ready(w) and not self.server.simulator.failure_for(w)]
        chosen = (ready or workloads)[0]
        body["workload"] = f"{chosen['kind'].lower()}/{chosen['metadata']['name']}"
        if not ready:
            reason = self.server.simulator.failure_for(chosen) or "not ready yet"
            self._answer(503, {**body, "error": f"backend not ready: {reason}"})
            return
        target = self.server.backends.get(f"{ns}/{svc_name}")
        if target is not None:
            self._proxy(target, request_body, body)
            return
        if path.startswith("/api/v1/targets") and is_prometheus(chosen):
            answer = Scraper(store, self.server.simulator).targets(chosen)
            self._answer(200 if answer["status"] == "success" else 503, answer)
            return
        self._answer(200, body)


    def _proxy(self, target: Backend, request_body: bytes, info: dict[str, Any]) -> None:
        """Forward this request to the real server at `target` and relay its answer (502 if it gives none)."""
        drop = HOP_BY_HOP | {"expect", "content-length"} | {h.strip().lower() for h in (self.headers.get("Connection") or "").split(",")}
        conn = http.client.HTTPConnection(target[0], target[1], timeout=self.server.proxy_timeout)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in drop:
                    conn.putheader(name, value)
            conn.putheader("X-Forwarded-For", self.client_address[0])
            conn.putheader("X-Forwarded-Host", self.headers.get("Host") or "")
            conn.putheader("X-Forwarded-Proto", "http")
            if request_body or self.command in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(request_body)))
            conn.endheaders(request_body or None)
            resp = conn.getresponse()
            payload = resp.read()
            status, reason, headers = resp.status, resp.reason, resp.getheaders()
        except (OSError, http.client.HTTPException) as exc:
            backend = f"{target[0]}:{target[1]}"
            log.info("ingress: backend %s for %s did not answer: %s", backend, info["service"], exc)
            self._answer(502, {**info, "backend": backend,
                               "error": f"bad gateway: backend {backend} did not answer: {exc}"})
            return
        finally:
            conn.close()
        drop_resp = HOP_BY_HOP | {"content-length", "date", "server"} | {
            h.strip().lower() for k, v in headers if k.lower() == "connection" for h in v.split(",")}
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in drop_resp:
                self.send_header(name, value)
        self.send_header("Date", self.date_time_string())
        self.send_header("Server", next((v for k, v in headers if k.lower() == "server"), self.version_string()))
        if self.command == "HEAD":
            length = next((v for k, v in headers if k.lower() == "content-length"), None)
            if length is not None:
                self.send_header("Content-Length", length)
        elif status >= 200 and status not in (204, 304):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and status >= 200 and status not in (204, 304) and payload:
            self.wfile.write(payload)


class IngressServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store, simulator: Simulator,
                 backends: Mapping[str, Backend] | None = None, proxy_timeout: float = PROXY_TIMEOUT) -> None:
        self.backends = check_backends(backends)  # before binding: a bad mapping refuses to start
        super().__init__(address, IngressHandler)
        self.store = store
        self.simulator = simulator
        self.proxy_timeout = proxy_timeout
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="kube-ingress", daemon=True)
