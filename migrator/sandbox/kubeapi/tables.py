"""`kubectl get` asks for meta.k8s.io Table; a few kind-specific columns make its output readable."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .resources import Resource

Column = tuple[str, str]  # name, type


def _age(obj: dict[str, Any]) -> str:
    ts = obj["metadata"].get("creationTimestamp")
    if not ts:
        return "<unknown>"
    return age_of(str(ts))


def age_of(ts: str) -> str:
    secs = int((datetime.now(UTC) - datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)).total_seconds())
    if secs < 120:
        return f"{max(secs, 0)}s"
    if secs < 7200:
        return f"{secs // 60}m"
    return f"{secs // 3600}h"


def _extra(obj: dict[str, Any]) -> tuple[list[Column], list[Any]]:
    kind, spec, status = obj.get("kind"), obj.get("spec") or {}, obj.get("status") or {}
    if kind in ("Deployment", "StatefulSet"):
        ready = f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}"
        return [("Ready", "string"), ("Available", "integer")], [ready, status.get("availableReplicas", 0)]
    if kind == "DaemonSet":
        selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
        cols: list[Column] = [("Desired", "integer"), ("Current", "integer"), ("Ready", "integer"),
                              ("Up-to-date", "integer"), ("Available", "integer"), ("Node Selector", "string")]
        return cols, [int(status.get(f) or 0) for f in ("desiredNumberScheduled", "currentNumberScheduled",
                                                        "numberReady", "updatedNumberScheduled", "numberAvailable")] \
            + [",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"]
    if kind == "Pod":
        cs = status.get("containerStatuses") or []
        ready = f"{sum(1 for c in cs if c.get('ready'))}/{len(spec.get('containers') or [])}"
        phase = status.get("phase", "")
        for c in cs:
            reason = ((c.get("state") or {}).get("waiting") or {}).get("reason")
            if reason:
                phase = reason
        return [("Ready", "string"), ("Status", "string"), ("Restarts", "integer")], \
            [ready, phase, sum(int(c.get("restartCount", 0)) for c in cs)]
    if kind == "Service":
        return [("Type", "string"), ("Cluster-IP", "string")], [spec.get("type", ""), spec.get("clusterIP", "")]
    if kind == "Namespace":
        return [("Status", "string")], [status.get("phase", "")]
    if kind == "Event":
        return [("Type", "string"), ("Reason", "string"), ("Message", "string")], \
            [obj.get("type", ""), obj.get("reason", ""), obj.get("message", "")]
    return [], []


def table(res: Resource, items: list[dict[str, Any]], rv: int) -> dict[str, Any]:
    extra_cols = _extra(items[0])[0] if items else _extra({"kind": res.kind, "metadata": {}})[0]
    columns = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    columns += [{"name": n, "type": t, "format": "", "description": n, "priority": 0} for n, t in extra_cols]
    columns.append({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0})
    rows = []
    for obj in items:
        rows.append({
            "cells": [obj["metadata"]["name"], *_extra(obj)[1], _age(obj)],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]},
        })
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(rv)},
            "columnDefinitions": columns, "rows": rows}
