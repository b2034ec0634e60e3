"""The cluster Prometheus's `/api/v1/targets`, from the scrape configuration it was deployed with.

The Prometheus workload's config (the `prometheus.yml` key of a ConfigMap its pod template mounts) is
read from the store and followed as Prometheus follows it, for the parts the platform uses:

- `kubernetes_sd_configs: [{role: pod}]`: one target per declared container port of every Pod that is not
  finished (a port-less target per container without ports), with the `__meta_kubernetes_*` labels that
  Prometheus documents for the pod role, then the job's `relabel_configs` (keep, drop, replace, labelmap;
  regexes anchored, `$1` replacements);
- `static_configs`: each `svc.ns.svc[.cluster.local]:port` target is reachable when the Service declares
  that port and a ready workload matches its selector (no kube-proxy forwards an undeclared port).

A target is up when it is reachable: the Pod is Ready and its workload has no simulated failure. What is
not scraped is the metrics endpoint itself (no HTTP request to the pod); a config that names another
service-discovery role or relabel action is reported as an error target, never silently skipped.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .resources import CONFIGMAP, DAEMONSET, DEPLOYMENT, POD, SERVICE, STATEFULSET
from .selectors import selector_matches
from .simulator import Simulator, is_ready
from .store import Store

CONFIG_KEY = "prometheus.yml"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def is_prometheus(workload: dict[str, Any]) -> bool:
    labels = ((workload.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    return "prometheus" in (labels.get("app"), labels.get("component"), workload["metadata"]["name"])


def _config(store: Store, workload: dict[str, Any]) -> dict[str, Any] | None:
    ns = workload["metadata"]["namespace"]
    spec = (workload.get("spec") or {}).get("template", {}).get("spec") or {}
    for vol in spec.get("volumes") or []:
        name = (vol.get("configMap") or {}).get("name")
        cm = store.get(CONFIGMAP.key, ns, name) if name else None
        text = ((cm or {}).get("data") or {}).get(CONFIG_KEY)
        if text:
            loaded = yaml.safe_load(text)
            return loaded if isinstance(loaded, dict) else None
    return None


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _pod_candidates(pod: dict[str, Any]) -> list[dict[str, str]]:
    meta, status = pod["metadata"], pod.get("status") or {}
    base = {"__meta_kubernetes_namespace": meta["namespace"], "__meta_kubernetes_pod_name": meta["name"],
            "__meta_kubernetes_pod_ip": str(status.get("podIP") or ""),
            "__meta_kubernetes_pod_ready": "true" if _pod_ready(pod) else "false",
            "__meta_kubernetes_pod_phase": str(status.get("phase") or "")}
    for k, v in (meta.get("labels") or {}).items():
        base[f"__meta_kubernetes_pod_label_{_UNSAFE.sub('_', k)}"] = str(v)
    for k, v in (meta.get("annotations") or {}).items():
        base[f"__meta_kubernetes_pod_annotation_{_UNSAFE.sub('_', k)}"] = str(v)
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        ports = c.get("ports") or [None]
        for p in ports:
            labels = {**base, "__meta_kubernetes_pod_container_name": str(c.get("name") or "")}
            if p is None:
                labels["__address__"] = base["__meta_kubernetes_pod_ip"]
            else:
                labels.update({"__meta_kubernetes_pod_container_port_number": str(p.get("containerPort")),
                               "__meta_kubernetes_pod_container_port_name": str(p.get("name") or ""),
                               "__address__": f"{base['__meta_kubernetes_pod_ip']}:{p.get('containerPort')}"})
            out.append(labels)
    return out


def _expand(replacement: str, m: re.Match[str]) -> str:
    # Go's regexp expansion: $1, ${1}, ${name}; a group that did not match expands to "".
    def one(g: re.Match[str]) -> str:
        key = g.group(1) or g.group(2)
        try:
            return m.group(int(key) if key.isdigit() else key) or ""
        except IndexError:  # no such group
            return ""

    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", one, replacement)


def relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's relabelling: the new label set, or None when the target is dropped."""
    out = dict(labels)
    for r in rules:
        action = str(r.get("action", "replace")).lower()
        regex = re.compile(str(r.get("regex", "(.*)")))
        if action == "labelmap":
            for k, v in list(out.items()):
                m = regex.fullmatch(k)
                if m:
                    out[_expand(str(r.get("replacement", "$1")), m)] = v
            continue
        value = str(r.get("separator", ";")).join(out.get(s, "") for s in r.get("source_labels") or [])
        m = regex.fullmatch(value)
        if action == "keep":
            if not m:
                return None
        elif action == "drop":
            if m:
                return None
        elif action == "replace":
            if m and r.get("target_label"):
                new = _expand(str(r.get("replacement", "$1")), m)
                if new:
                    out[str(r["target_label"])] = new
                else:
                    out.pop(str(r["target_label"]), None)
        else:
            raise ValueError(f"relabel action {action!r} is not followed by the stand-in")
    return out


def _target(job: dict[str, Any], discovered: dict[str, str], up: bool, error: str) -> dict[str, Any]:
    labels = {k: v for k, v in discovered.items() if not k.startswith("__")}
    labels.setdefault("instance", discovered.get("__address__", ""))
    labels["job"] = str(job.get("job_name"))
    scheme = discovered.get("__scheme__") or str(job.get("scheme") or "http")
    path = discovered.get("__metrics_path__") or str(job.get("metrics_path") or "/metrics")
    return {"discoveredLabels": discovered, "labels": labels, "scrapePool": labels["job"],
            "scrapeUrl": f"{scheme}://{discovered.get('__address__', '')}{path}",
            "health": "up" if up else "down", "lastError": "" if up else error}


class Scraper:
    def __init__(self, store: Store, simulator: Simulator) -> None:
        self.store, self.simulator = store, simulator

    def _owner_failure(self, pod: dict[str, Any]) -> str | None:
        ns = pod["metadata"]["namespace"]
        for ref in pod["metadata"].get("ownerReferences") or []:
            for res in (DEPLOYMENT, STATEFULSET, DAEMONSET):
                if res.kind == ref.get("kind"):
                    owner = self.store.get(res.key, ns, ref.get("name"))
                    if owner is not None and self.simulator.failure_for(owner):
                        return self.simulator.failure_for(owner)
        return None

    def pod_targets(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        out, seen = [], set()
        for pod in self.store.select(POD.key):
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for candidate in _pod_candidates(pod):
                labels = relabel(candidate, job.get("relabel_configs") or [])
                if labels is None:
                    continue
                key = tuple(sorted((k, v) for k, v in labels.items() if not k.startswith("__meta_")))
                if key in seen:
                    continue  # Prometheus drops a target whose labels another one already has
                seen.add(key)
                failure = self._owner_failure(pod)
                up = _pod_ready(pod) and failure is None
                out.append(_target(job, labels, up, failure or "connection refused: the pod is not ready"))
        return out

    def static_target(self, job: dict[str, Any], address: str) -> dict[str, Any]:
        host, _, port = address.rpartition(":")
        parts = host.split(".")
        if len(parts) < 3 or parts[2] != "svc":
            return _target(job, {"__address__": address}, False, f"dial tcp: lookup {host}: no such host")
        svc = self.store.get(SERVICE.key, parts[1], parts[0])
        if svc is None:
            return _target(job, {"__address__": address}, False, f"dial tcp: lookup {host}: no such host")
        ports = [str(p.get("port")) for p in (svc.get("spec") or {}).get("ports") or []]
        if port not in ports:
            return _target(job, {"__address__": address}, False,
                           f"connection refused: Service {parts[1]}/{parts[0]} declares no port {port} "
                           f"(it has {', '.join(ports) or 'none'})")
        selector = (svc.get("spec") or {}).get("selector") or {}
        ready = [w for res in (DEPLOYMENT, STATEFULSET, DAEMONSET) for w in self.store.select(res.key, parts[1])
                 if selector_matches(selector, ((w["spec"].get("template") or {}).get("metadata") or {})
                                     .get("labels") or {}) and is_ready(w) and not self.simulator.failure_for(w)]
        return _target(job, {"__address__": address}, bool(ready), "connection refused: no ready endpoint")

    def targets(self, workload: dict[str, Any]) -> dict[str, Any]:
        config = _config(self.store, workload)
        if config is None:
            return {"status": "error", "errorType": "unavailable",
                    "error": f"no {CONFIG_KEY} in a ConfigMap that {workload['metadata']['name']} mounts"}
        active: list[dict[str, Any]] = []
        for job in config.get("scrape_configs") or []:
            for sd in job.get("kubernetes_sd_configs") or []:
                if sd.get("role") != "pod":
                    active.append(_target(job, {"__address__": ""}, False,
                                          f"service discovery role {sd.get('role')!r} is not followed by the stand-in"))
                    continue
                try:
                    active.extend(self.pod_targets(job))
                except ValueError as exc:
                    active.append(_target(job, {"__address__": ""}, False, str(exc)))
            for static in job.get("static_configs") or []:
                active.extend(self.static_target(job, str(t)) for t in static.get("targets") or [])
        return {"status": "success", "data": {"activeTargets": active, "droppedTargets": []}}
