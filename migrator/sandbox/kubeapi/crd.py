"""CustomResourceDefinitions (apiextensions.k8s.io/v1) and the custom resources they define.

A CRD is an ordinary stored object (`customresourcedefinitions`). The resources it defines are not
static: every request looks them up from the CRDs in the store, so a CRD created a moment ago is
served at once (a real server takes a second or two to establish it), and deleting it removes the
resource and every object of it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from . import tables
from .errors import ApiError, invalid
from .resources import RESOURCES, Resource, lookup
from .store import Store
from .validation import validate_meta

GROUP = "apiextensions.k8s.io"
CRD = next(r for r in RESOURCES if r.group == GROUP and r.plural == "customresourcedefinitions")

Cause = tuple[str, str, str]
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_KIND = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_VERSION = re.compile(r"^v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$")


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version ordering: GA > beta > alpha, then by number (v2 > v1 > v1beta2 > v1beta1)."""
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", version)
    if not m:
        return (-1, 0, 0)
    stage = {"alpha": 0, "beta": 1, None: 2}[m.group(2)]
    return (stage, int(m.group(1)), int(m.group(3) or 0))


def _served(crd: dict[str, Any]) -> list[Resource]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served"):
            continue
        subresources = v.get("subresources") or {}
        out.append(Resource(str(spec["group"]), str(v["name"]), str(names["kind"]), str(names["plural"]),
                            spec.get("scope") == "Namespaced", tuple(names.get("shortNames") or ()),
                            has_status="status" in subresources, tracks_generation=True, custom=True))
    return sorted(out, key=lambda r: version_priority(r.version), reverse=True)


def custom_resources(store: Store) -> list[Resource]:
    """Every served version of every stored CRD, preferred version first within a group."""
    out: list[Resource] = []
    for crd in store.select(CRD.key):
        out += _served(crd)
    return out


def all_resources(store: Store) -> list[Resource]:
    return [*RESOURCES, *custom_resources(store)]


def resolve(store: Store, group: str, version: str, plural: str) -> Resource | None:
    """A built-in resource, else a custom one served by a CRD in the store."""
    res = lookup(group, version, plural)
    if res is not None:
        return res
    return next((r for r in custom_resources(store) if (r.group, r.version, r.plural) == (group, version, plural)),
                None)


def printer_columns(store: Store, res: Resource) -> list[dict[str, Any]]:
    """The CRD's additionalPrinterColumns for this version (what `kubectl get` shows)."""
    for crd in store.select(CRD.key):
        spec = crd.get("spec") or {}
        if spec.get("group") != res.group or (spec.get("names") or {}).get("plural") != res.plural:
            continue
        for v in spec.get("versions") or []:
            if v.get("name") == res.version:
                return [c for c in v.get("additionalPrinterColumns") or [] if isinstance(c, dict)]
    return []


def json_path(obj: Any, path: str) -> Any:
    """The simple JSONPath subset printer columns use: `.a.b.c` (and `.a[0].b`)."""
    cur = obj
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path.strip().lstrip("{").rstrip("}")):
        if part.startswith("["):
            idx = int(part[1:-1])
            cur = cur[idx] if isinstance(cur, list) and idx < len(cur) else None
        else:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            return None
    return cur


def validate_crd(obj: dict[str, Any]) -> list[Cause]:
    """The checks a real server makes that a hand-written CRD most often fails."""
    causes: list[Cause] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [("spec", "FieldValueRequired", "Required value")]
    group, names = spec.get("group"), spec.get("names")
    if not isinstance(group, str) or "." not in group:
        causes.append(("spec.group", "FieldValueInvalid", f"Invalid value: {group!r}: should be a domain with at "
                                                          "least one dot"))
    if not isinstance(names, dict):
        causes.append(("spec.names", "FieldValueRequired", "Required value"))
        names = {}
    plural, kind = names.get("plural"), names.get("kind")
    if not isinstance(plural, str) or not _DNS_LABEL.match(plural):
        causes.append(("spec.names.plural", "FieldValueInvalid", f"Invalid value: {plural!r}: a lowercase RFC 1123 "
                                                                 "label is required"))
    if not isinstance(kind, str) or not _KIND.match(kind):
        causes.append(("spec.names.kind", "FieldValueInvalid", f"Invalid value: {kind!r}: must be a CamelCase name"))
    if isinstance(plural, str) and isinstance(group, str) and obj["metadata"].get("name") != f"{plural}.{group}":
        causes.append(("metadata.name", "FieldValueInvalid", f'Invalid value: "{obj["metadata"].get("name")}": '
                                                             "must be spec.names.plural+\".\"+spec.group"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(("spec.scope", "FieldValueNotSupported", f"Unsupported value: {spec.get('scope')!r}: "
                                                               'supported values: "Cluster", "Namespaced"'))
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        causes.append(("spec.versions", "FieldValueRequired", "Required value: must have at least one version"))
        return causes
    storage = 0
    for i, v in enumerate(versions):
        if not isinstance(v, dict) or not isinstance(v.get("name"), str) or not _VERSION.match(v["name"]):
            causes.append((f"spec.versions[{i}].name", "FieldValueInvalid",
                           "Invalid value: must be a version like v1, v1beta1 or v2alpha3"))
            continue
        storage += bool(v.get("storage"))
        if not isinstance(v.get("served"), bool) or not isinstance(v.get("storage"), bool):
            causes.append((f"spec.versions[{i}]", "FieldValueRequired", "Required value: served and storage"))
        if not isinstance((v.get("schema") or {}).get("openAPIV3Schema"), dict):
            causes.append((f"spec.versions[{i}].schema.openAPIV3Schema", "FieldValueRequired",
                           "Required value: schemas are required"))
    if storage != 1:
        causes.append(("spec.versions", "FieldValueInvalid", "Invalid value: must have exactly one version marked as "
                                                             "storage version"))
    return causes


def established(obj: dict[str, Any]) -> None:
    """The status the apiextensions controller writes: names accepted, established (at once here)."""
    spec = obj.get("spec") or {}
    names = copy.deepcopy(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    now = obj["metadata"].get("creationTimestamp")
    status = obj.setdefault("status", {})
    status["acceptedNames"] = names
    status["storedVersions"] = sorted({*(status.get("storedVersions") or []),
                                       *[v["name"] for v in spec.get("versions") or [] if v.get("storage")]})
    status["conditions"] = [
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found",
         "lastTransitionTime": now},
        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
         "message": "the initial names have been accepted", "lastTransitionTime": now},
    ]
    names_spec = spec.get("names")
    if isinstance(names_spec, dict):
        names_spec.setdefault("singular", names["singular"])
        names_spec.setdefault("listKind", names["listKind"])


def remove_instances(store: Store, crd: dict[str, Any]) -> None:
    """Deleting a CRD deletes every custom resource of it (the real server's finalizer does the same)."""
    spec = crd.get("spec") or {}
    key = f"{spec.get('group')}/{(spec.get('names') or {}).get('plural')}"
    for obj in store.select(key):
        store.remove(key, obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


def no_strategic_merge(res: Resource) -> None:
    if res.custom:
        raise ApiError(415, "UnsupportedMediaType",
                       "the body of the request was in an unknown format - accepted media types include: "
                       "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")


def _invalid(res: Resource, name: str, causes: list[Cause]) -> None:
    if causes:
        raise invalid(res, name, causes)


def validate_custom(res: Resource, obj: dict[str, Any]) -> None:
    """What every object gets checked for (name, labels); the CRD's schema is not evaluated."""
    _invalid(res, str(obj["metadata"].get("name") or ""), validate_meta(res, obj))


def check_crd(res: Resource, obj: dict[str, Any]) -> None:
    _invalid(res, str(obj["metadata"].get("name") or ""), validate_crd(obj))


def table(store: Store, res: Resource, items: list[dict[str, Any]], rv: int) -> dict[str, Any]:
    """`kubectl get` for a custom resource: Name, then the CRD's printer columns (or Age when it has none)."""
    columns = printer_columns(store, res)
    if not columns:
        return tables.table(res, items, rv)
    defs = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    defs += [{"name": str(c.get("name", "")), "type": str(c.get("type", "string")), "format": str(c.get("format", "")),
              "description": str(c.get("description", "")), "priority": int(c.get("priority", 0))} for c in columns]
    rows = []
    for obj in items:
        cells: list[Any] = [obj["metadata"]["name"]]
        for c in columns:
            value = json_path(obj, str(c.get("jsonPath", "")))
            if c.get("type") == "date" and isinstance(value, str):
                value = tables.age_of(value)
            cells.append(value)
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                "metadata": obj["metadata"]}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(rv)},
            "columnDefinitions": defs, "rows": rows}
