"""Ingress stand-in: routes by Host header using the Ingress objects in the store and answers for the
backend Service's workload, 200 when it is ready and 503 when it is not."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .resources import DAEMONSET, DEPLOYMENT, INGRESS, SERVICE, STATEFULSET
from .selectors import selector_matches
from .simulator import Simulator, is_ready
from .store import Store

log = logging.getLogger("migrator.sandbox.kubeapi.ingress")


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

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.do_GET()

    def do_GET(self) -> None:
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
        if path.startswith("/api/v1/targets") and _is_prometheus(chosen):
            self._answer(200, prometheus_targets(store, self.server.simulator))
            return
        self._answer(200, body)


def _is_prometheus(workload: dict[str, Any]) -> bool:
    labels = ((workload.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    return "prometheus" in (labels.get("app"), labels.get("component"), workload["metadata"]["name"])


def prometheus_targets(store: Store, simulator: Simulator) -> dict[str, Any]:
    """What the cluster's Prometheus would report after scraping every workload: one target per
    Deployment/StatefulSet/DaemonSet, up when it is ready (the simulator decides), in Prometheus's
    `/api/v1/targets` shape."""
    active = []
    for res in (DEPLOYMENT, STATEFULSET, DAEMONSET):
        for w in store.select(res.key):
            meta = w["metadata"]
            if meta.get("namespace") in ("kube-system", "kube-public", "kube-node-lease"):
                continue
            failure = simulator.failure_for(w)
            up = is_ready(w) and not failure
            active.append({
                "labels": {"job": meta["name"], "namespace": meta["namespace"],
                           "instance": f"{meta['name']}.{meta['namespace']}.svc:9100"},
                "scrapeUrl": f"http://{meta['name']}.{meta['namespace']}.svc:9100/metrics",
                "health": "up" if up else "down",
                "lastError": "" if up else (failure or "not ready"),
            })
    return {"status": "success", "data": {"activeTargets": active, "droppedTargets": []}}


class IngressServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store, simulator: Simulator) -> None:
        super().__init__(address, IngressHandler)
        self.store = store
        self.simulator = simulator
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="kube-ingress", daemon=True)
