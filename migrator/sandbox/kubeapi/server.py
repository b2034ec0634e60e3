"""The HTTP front of the stand-in: routing, content negotiation, watch streaming."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import crd, discovery, errors, openapi, scale
from .api import Api, decode_body
from .resources import Resource
from .selectors import field_selector, label_selector
from .store import Store
from .tables import table
from .watch import WatchFilter

log = logging.getLogger("migrator.sandbox.kubeapi")

MAX_WATCH_SECONDS = 1800
POD_STREAMS = ("exec", "portforward", "log", "attach")
# Warnings for objects in a response; the readiness simulator uses it to surface failure reasons.
WarningSource = Callable[[list[dict[str, Any]]], list[str]]


class KubeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store) -> None:
        super().__init__(address, Handler)
        self.store = store
        self.api = Api(store)
        self.stopping = threading.Event()
        self.warnings: WarningSource = lambda objs: []
        # pods/exec, portforward and log (streams.PodStreams), set by the launcher
        self.pod_streams: Any = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: KubeHTTPServer

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes; without this each response waits on delayed ACKs
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing -------------------------------------------------------------------------------------
    def _send(self, code: int, payload: bytes, content_type: str, warnings: list[str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        for w in warnings or []:
            self.send_header("Warning", '299 - "' + w.replace('"', "'").replace("\n", " ") + '"')
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, code: int, body: Any, warnings: list[str] | None = None) -> None:
        self._send(code, json.dumps(body).encode(), "application/json", warnings)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            self._route(method, url.path, query, body)
        except errors.ApiError as exc:
            self._json(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a stand-in bug must still answer like an API server
            log.error("internal error on %s %s: %s", method, self.path, traceback.format_exc())
            self._json(500, errors.ApiError(500, "InternalError", f"stand-in error: {exc}").status())

    def _manager(self, query: dict[str, str]) -> str:
        if query.get("fieldManager"):
            return query["fieldManager"]
        return (self.headers.get("User-Agent") or "unknown").split("/")[0] or "unknown"

    # -- routing --------------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        parts = [p for p in path.split("/") if p]
        served = crd.all_resources(self.server.store)
        if path in ("/healthz", "/livez", "/readyz"):
            self._send(200, b"ok", "text/plain")
            return
        if path == "/version":
            self._json(200, discovery.SERVER_VERSION)
            return
        if parts[:2] == ["openapi", "v3"]:
            doc = openapi.root(served) if len(parts) == 2 else openapi.group_version("/".join(parts[2:]), served)
            if doc is None:
                raise errors.path_not_found(path)
            self._json(200, doc)
            return
        if parts == ["api"]:
            host, port = self.server.server_address[:2]
            addr = host.decode() if isinstance(host, bytes) else str(host)
            self._json(200, discovery.api_versions(f"{addr}:{port}"))
            return
        if parts == ["apis"]:
            self._json(200, discovery.api_group_list(served))
            return
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        elif len(parts) == 2 and parts[0] == "apis":
            doc = discovery.api_group(parts[1], served)
            if doc is None:
                raise errors.path_not_found(path)
            self._json(200, doc)
            return
        else:
            raise errors.path_not_found(path)
        if not rest:
            doc = discovery.resource_list(group, version, served)
            if doc is None:
                raise errors.path_not_found(path)
            self._json(200, doc)
            return
        watch = query.get("watch") in ("true", "1")
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        ns: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise errors.path_not_found(path)
        res = crd.resolve(self.server.store, group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if res is not None and res.kind == "Pod" and ns and name and sub in POD_STREAMS and self.server.pod_streams:
            self.server.pod_streams.handle(self, method, ns, name, sub)
            return
        allowed_sub = (sub == "status" and res is not None and res.has_status) or \
            (sub == "scale" and res is not None and res.kind in scale.SCALABLE)
        if res is None or (ns is not None and not res.namespaced) or (sub and not allowed_sub):
            raise errors.path_not_found(path)
        if res.namespaced and name is not None and ns is None:
            raise errors.path_not_found(path)
        self._resource(method, res, ns, name, sub, query, body, watch)

    def _resource(self, method: str, res: Resource, ns: str | None, name: str | None, sub: str,
                  query: dict[str, str], body: bytes, watch: bool) -> None:
        api = self.server.api
        dry_run = query.get("dryRun") == "All"
        if query.get("dryRun") not in (None, "", "All"):
            raise errors.bad_request(f"unsupported dryRun value {query['dryRun']!r}; only All is supported")
        manager = self._manager(query)
        ctype = self.headers.get("Content-Type") or "application/json"
        if "protobuf" in ctype or "cbor" in ctype:
            raise errors.ApiError(415, "UnsupportedMediaType",
                                  f"the stand-in accepts JSON and YAML bodies only, not {ctype}")
        space = ns or ""
        if name is None:
            labels, flds = label_selector(query.get("labelSelector")), field_selector(query.get("fieldSelector"))
            if method == "GET" and watch:
                self._watch(WatchFilter(res, ns, labels, flds), query)
            elif method == "GET":
                items, rv = api.list_objects(res, ns, labels, flds)
                warnings = self.server.warnings(items)
                if "as=Table" in (self.headers.get("Accept") or ""):
                    doc = crd.table(self.server.store, res, items, rv) if res.custom else table(res, items, rv)
                    self._json(200, doc, warnings)
                else:
                    self._json(200, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                                     "metadata": {"resourceVersion": str(rv)}, "items": items}, warnings)
            elif method == "POST":
                if res.namespaced and ns is None:
                    raise errors.method_not_allowed(method)
                obj = api.create(res, space, decode_body(body, ctype), dry_run=dry_run, manager=manager)
                self._json(201, obj)
            elif method == "DELETE":
                items = api.delete_collection(res, ns, labels, flds, dry_run=dry_run)
                self._json(200, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                                 "metadata": {"resourceVersion": str(self.server.store.current_rv())},
                                 "items": items})
            else:
                raise errors.method_not_allowed(method)
            return
        if sub == "scale":
            if method == "GET":
                self._json(200, scale.view(api.get(res, space, name)))
            elif method in ("PUT", "PATCH"):
                self._json(200, scale.write(api, res, space, name, method, ctype, body, dry_run, manager))
            else:
                raise errors.method_not_allowed(method)
            return
        if method == "GET":
            obj = api.get(res, space, name)
            self._json(200, obj, self.server.warnings([obj]))
        elif method == "PUT":
            self._json(200, api.replace(res, space, name, decode_body(body, ctype), dry_run=dry_run,
                                        manager=manager, subresource=sub))
        elif method == "PATCH":
            existed = self.server.store.get(res.key, space if res.namespaced else "", name) is not None
            if ctype.startswith("application/apply-patch"):
                manager = query.get("fieldManager", "")  # apply never defaults its manager
            obj = api.patch(res, space, name, ctype, body, dry_run=dry_run, manager=manager,
                            force=query.get("force") in ("true", "1"), subresource=sub)
            self._json(200 if existed else 201, obj)
        elif method == "DELETE":
            if sub:
                raise errors.method_not_allowed(method)
            self._json(200, api.delete(res, space, name, dry_run=dry_run))
        else:
            raise errors.method_not_allowed(method)

    # -- watch ----------------------------------------------------------------------------------------
    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, flt: WatchFilter, query: dict[str, str]) -> None:
        store = self.server.store
        try:
            timeout = float(query.get("timeoutSeconds") or MAX_WATCH_SECONDS)
        except ValueError as exc:
            raise errors.bad_request("timeoutSeconds must be a number") from exc
        deadline = time.monotonic() + min(max(timeout, 0.0), MAX_WATCH_SECONDS)
        rv_param = query.get("resourceVersion") or ""
        send_initial = query.get("sendInitialEvents") == "true"
        with store.lock:
            current = store.current_rv()
            if not rv_param or rv_param == "0" or send_initial:
                initial, last = flt.initial(store), current
            else:
                try:
                    last = int(rv_param)
                except ValueError as exc:
                    raise errors.bad_request(f"invalid resourceVersion {rv_param!r}") from exc
                if last < store.oldest_resumable():
                    raise errors.expired(rv_param, store.oldest_resumable())
                initial = []
        warnings = self.server.warnings([e["object"] for e in initial] or store.select(flt.res.key, flt.ns))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        # The stream ends with the connection: said in the response, so a client's pool does not send its
        # next request on it (a POST there, never retried, failed with RemoteDisconnected).
        self.send_header("Connection", "close")
        for w in warnings:
            self.send_header("Warning", '299 - "' + w.replace('"', "'").replace("\n", " ") + '"')
        self.end_headers()
        self.close_connection = True
        for event in initial:
            self._chunk(event)
        if send_initial:
            self._chunk(flt.bookmark(current, initial_end=True))
        while not self.server.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with store.changed:
                events = store.events_after(last)
                if not events:
                    store.changed.wait(timeout=min(0.5, remaining))
                    events = store.events_after(last)
            for e in events:
                last = e.rv
                out = flt.translate(e)
                if out is not None:
                    self._chunk(out)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
