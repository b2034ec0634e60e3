"""The `/scale` subresource of Deployments and StatefulSets (what `kubectl scale` talks to)."""

from __future__ import annotations

from typing import Any

from . import errors
from .api import Api, decode_body
from .patch import json_patch, merge_patch, strategic_merge
from .resources import Resource

SCALABLE = ("Deployment", "StatefulSet")


def view(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
        "status": {"replicas": int((obj.get("status") or {}).get("replicas") or 0),
                   "selector": ",".join(f"{k}={v}" for k, v in labels.items())},
    }


def write(api: Api, res: Resource, ns: str, name: str, method: str, content_type: str, raw: bytes,
          dry_run: bool, manager: str) -> dict[str, Any]:
    with api.store.lock:
        obj = api.get(res, ns, name)
        current = view(obj)
        body = decode_body(raw, content_type)
        if method == "PUT":
            wanted = body
        elif "json-patch" in content_type:
            wanted = json_patch(current, body)
        elif "merge-patch" in content_type:
            wanted = (strategic_merge if "strategic" in content_type else merge_patch)(current, body)
        else:
            raise errors.unsupported_media(content_type)
        replicas = ((wanted or {}).get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(res, name, [("spec.replicas", "FieldValueInvalid",
                                              f"Invalid value: {replicas!r}: must be greater than or equal to 0")])
        rv = ((wanted or {}).get("metadata") or {}).get("resourceVersion")
        if method == "PUT" and rv and rv != obj["metadata"]["resourceVersion"]:
            raise errors.stale(res, name)
        obj["spec"]["replicas"] = replicas
        return view(api.replace(res, ns, name, obj, dry_run=dry_run, manager=manager))
