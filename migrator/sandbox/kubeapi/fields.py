"""Field ownership (managedFields, FieldsV1) and server-side apply.

Ownership is tracked at leaf granularity: a path is a tuple of FieldsV1 elements
(`f:spec`, `k:{"name":"api"}`); lists without a merge key are atomic leaves.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError
from .patch import merge_key, strategic_merge

Path = tuple[str, ...]
Owner = tuple[str, str, str]  # manager, operation, subresource ("" for the main resource)

_META_OWNED = ("labels", "annotations", "finalizers", "ownerReferences")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ownable(obj: dict[str, Any], subresource: str) -> dict[str, Any]:
    """The part of an object that field managers can own for this endpoint."""
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    out = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k in _META_OWNED}
    if meta:
        out["metadata"] = meta
    return out


def _item_key(key: str, item: dict[str, Any]) -> str:
    return "k:" + json.dumps({key: item[key]}, separators=(",", ":"), sort_keys=True)


def leaves(value: Any, prefix: Path = (), field: str | None = None) -> Iterator[tuple[Path, Any]]:
    if isinstance(value, dict):
        if not value:
            yield prefix, value
            return
        for k, v in value.items():
            yield from leaves(v, prefix + ("f:" + k,), k)
    elif isinstance(value, list):
        key = merge_key(field, value) if value else None
        if key is None:
            yield prefix, value
            return
        for item in value:
            yield from leaves(item, prefix + (_item_key(key, item),), None)
    else:
        yield prefix, value


def get_at(obj: Any, path: Path) -> tuple[bool, Any]:
    cur = obj
    for el in path:
        if el.startswith("f:"):
            if not isinstance(cur, dict) or el[2:] not in cur:
                return False, None
            cur = cur[el[2:]]
        elif el.startswith("k:"):
            key = json.loads(el[2:])
            if not isinstance(cur, list):
                return False, None
            match = next((i for i in cur if isinstance(i, dict) and all(i.get(k) == v for k, v in key.items())), None)
            if match is None:
                return False, None
            cur = match
        else:
            return False, None
    return True, cur


def delete_at(obj: Any, path: Path) -> None:
    if not path:
        return
    found, parent = get_at(obj, path[:-1])
    if not found:
        return
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        key = json.loads(last[2:])
        parent[:] = [i for i in parent if not (isinstance(i, dict) and all(i.get(k) == v for k, v in key.items()))]


def paths_to_fields(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for el in path:
            node = node.setdefault(el, {})
            if el.startswith("k:"):
                node.setdefault(".", {})
    return root


def fields_to_paths(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    children = {k: v for k, v in fields.items() if k != "."}
    if not children:
        if prefix:
            out.add(prefix)
        return out
    for k, v in children.items():
        out |= fields_to_paths(v if isinstance(v, dict) else {}, prefix + (k,))
    return out


def read_owners(obj: dict[str, Any] | None) -> dict[Owner, set[Path]]:
    owners: dict[Owner, set[Path]] = {}
    for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        if not isinstance(entry, dict):
            continue
        owner = (str(entry.get("manager", "")), str(entry.get("operation", "Update")), str(entry.get("subresource", "")))
        owners.setdefault(owner, set()).update(fields_to_paths(entry.get("fieldsV1") or {}))
    return owners


def write_owners(obj: dict[str, Any], owners: dict[Owner, set[Path]], api_version: str,
                 touched: Owner | None, old: dict[str, Any] | None) -> None:
    """Store ownership back into metadata.managedFields, dropping paths that no longer exist."""
    times = {(e.get("manager"), e.get("operation"), e.get("subresource", "")): e.get("time")
             for e in ((old or {}).get("metadata") or {}).get("managedFields") or [] if isinstance(e, dict)}
    entries = []
    for owner, paths in owners.items():
        live = {p for p in paths if get_at(obj, p)[0]}
        if not live:
            continue
        entry: dict[str, Any] = {
            "manager": owner[0],
            "operation": owner[1],
            "apiVersion": api_version,
            "time": now() if owner == touched else (times.get(owner) or now()),
            "fieldsType": "FieldsV1",
            "fieldsV1": paths_to_fields(live),
        }
        if owner[2]:
            entry["subresource"] = owner[2]
        entries.append(entry)
    meta = obj.setdefault("metadata", {})
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


def _overlaps(a: Path, b: Path) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str, subresource: str,
                  api_version: str) -> None:
    """A non-apply write: the writer takes ownership of every leaf it changed."""
    owners = read_owners(old)
    old_view = ownable(old or {}, subresource)
    changed = {p for p, v in leaves(ownable(new, subresource)) if get_at(old_view, p) != (True, v)}
    for paths in owners.values():
        paths -= {p for p in paths if any(_overlaps(p, c) for c in changed)}
    me: Owner = (manager, "Update", subresource)
    owners.setdefault(me, set()).update(changed)
    write_owners(new, owners, api_version, me, old)


def conflict_error(kind: str, name: str, conflicts: list[tuple[str, Path]], api_version: str) -> ApiError:
    def dotted(path: Path) -> str:
        return "".join("." + el[2:] if el.startswith("f:") else "[" + el[2:] + "]" for el in path)

    managers = sorted({m for m, _ in conflicts})
    if len(conflicts) == 1:
        m, p = conflicts[0]
        msg = f'Apply failed with 1 conflict: conflict with "{m}" using {api_version}: {dotted(p)}'
    else:
        lines = "\n".join(f"- {dotted(p)}" for _, p in conflicts)
        who = ", ".join(f'"{m}"' for m in managers)
        msg = f"Apply failed with {len(conflicts)} conflicts: conflicts with {who} using {api_version}:\n{lines}"
    causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{m}" using {api_version}',
               "field": dotted(p)} for m, p in conflicts]
    return ApiError(409, "Conflict", msg, {"name": name, "kind": kind, "causes": causes})


def apply(live: dict[str, Any] | None, applied: dict[str, Any], manager: str, force: bool,
          api_version: str) -> dict[str, Any]:
    """Server-side apply of `applied` over `live` (None: create). Raises a 409 on ownership conflicts."""
    owners = read_owners(live)
    me: Owner = (manager, "Apply", "")
    view = ownable(applied, "")
    new_leaves = dict(leaves(view))
    if live is not None:
        conflicts: list[tuple[str, Path]] = []
        for p, v in new_leaves.items():
            found, current = get_at(live, p)
            if not found or current == v:
                continue
            for owner, paths in owners.items():
                if owner[0] != manager and not owner[2] and any(_overlaps(p, q) for q in paths):
                    conflicts.append((owner[0], p))
        if conflicts and not force:
            name = (live.get("metadata") or {}).get("name", "")
            raise conflict_error(str(live.get("kind", "")), str(name), conflicts, api_version)
        for _, p in conflicts:
            for owner, paths in owners.items():
                if owner[0] != manager:
                    paths -= {q for q in paths if _overlaps(p, q)}
    base = copy.deepcopy(live) if live is not None else {
        "apiVersion": applied.get("apiVersion"), "kind": applied.get("kind"),
        "metadata": {k: v for k, v in (applied.get("metadata") or {}).items() if k not in _META_OWNED}}
    merged = strategic_merge(base, view)
    # fields this manager applied before but dropped now are removed unless someone else owns them
    previous = owners.get(me, set())
    others = set().union(*(paths for owner, paths in owners.items() if owner != me)) if owners else set()
    new_set = set(new_leaves)
    for p in sorted(previous - new_set, key=len, reverse=True):
        if any(_overlaps(p, q) for q in others | new_set if q != p and len(q) > len(p)):
            continue
        if any(q == p for q in others):
            continue
        # drop a whole keyed list item when nothing in it stays owned
        for depth in range(len(p), 0, -1):
            if p[depth - 1].startswith("k:"):
                item = p[:depth]
                if not any(q[:depth] == item for q in others | new_set):
                    delete_at(merged, item)
                break
        delete_at(merged, p)
    owners[me] = new_set
    write_owners(merged, owners, api_version, me, live)
    return merged
