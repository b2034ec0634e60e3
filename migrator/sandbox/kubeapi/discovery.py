"""Legacy (non-aggregated) discovery documents; kubectl and the dynamic client fall back to these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .crd import version_priority
from .resources import RESOURCES, VERBS, Resource, groups

SERVER_VERSION = {
    "major": "1",
    "minor": "36",
    "gitVersion": "v1.36.0-migrator-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}


def _versions(members: Sequence[Resource]) -> list[str]:
    # custom groups can serve several versions; the preferred one sorts first (GA > beta > alpha)
    seen = dict.fromkeys(r.version for r in members)
    return sorted(seen, key=version_priority, reverse=True)


def _group(name: str, members: Sequence[Resource]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in _versions(members)]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(resources: Sequence[Resource] = RESOURCES) -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(g, m) for g, m in groups(resources).items() if g]}


def api_group(name: str, resources: Sequence[Resource] = RESOURCES) -> dict[str, Any] | None:
    members = groups(resources).get(name)
    if not name or not members:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, members)}


def resource_list(group: str, version: str, resources: Sequence[Resource] = RESOURCES) -> dict[str, Any] | None:
    members = [r for r in groups(resources).get(group, []) if r.version == version]
    if not members:
        return None
    out: list[dict[str, Any]] = []
    for r in members:
        entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                                 "kind": r.kind, "verbs": list(VERBS)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.kind in ("Deployment", "StatefulSet", "DaemonSet", "Pod", "Service", "Ingress"):
            entry["categories"] = ["all"]
        out.append(entry)
        if r.kind in ("Deployment", "StatefulSet"):
            out.append({"name": f"{r.plural}/scale", "singularName": "", "namespaced": True, "group": "autoscaling",
                        "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
        if r.has_status:
            out.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": ["get", "patch", "update"]})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}
