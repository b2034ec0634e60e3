"""A skeleton OpenAPI v3 document set. It carries no schemas: it exists so that kubectl sees that
every PATCH endpoint accepts `fieldValidation` and leaves validation to the server instead of
downloading schemas for client-side validation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .discovery import SERVER_VERSION
from .resources import RESOURCES, Resource, groups

HASH = "0000000000000000000000000000000000000000000000000000000000000000"


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def root(resources: Sequence[Resource] = RESOURCES) -> dict[str, Any]:
    paths = {}
    for r in resources:
        gv = _gv_path(r.group, r.version)
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={HASH}"}
    return {"paths": paths}


def _operation(res: Resource, verb: str) -> dict[str, Any]:
    return {
        "operationId": f"{verb}{res.kind}",
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": res.group, "version": res.version, "kind": res.kind},
        "parameters": [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        ],
        "responses": {"200": {"description": "OK"}},
    }


def group_version(path: str, resources: Sequence[Resource] = RESOURCES) -> dict[str, Any] | None:
    for group, all_members in groups(resources).items():
        members = [r for r in all_members if _gv_path(group, r.version) == path]
        if not members:
            continue
        paths: dict[str, Any] = {}
        for res in members:
            base = f"/{_gv_path(group, res.version)}" + ("/namespaces/{namespace}" if res.namespaced else "")
            paths[f"{base}/{res.plural}/{{name}}"] = {
                "get": _operation(res, "get"), "put": _operation(res, "put"), "patch": _operation(res, "patch")}
            paths[f"{base}/{res.plural}"] = {"post": _operation(res, "post")}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
                "paths": paths, "components": {"schemas": {}}}
    return None
