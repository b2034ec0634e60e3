"""The API's verbs over the store: create, get, list, replace, patch, apply, delete."""

from __future__ import annotations

import copy
import json
import secrets
import string
import uuid
from typing import Any

import yaml

from . import errors, fields
from .crd import CRD, check_crd, established, no_strategic_merge, remove_instances, validate_custom
from .defaults import apply_defaults
from .patch import json_patch, merge_patch, strategic_merge
from .resources import NAMESPACE, Resource
from .selectors import Matcher
from .store import Store
from .validation import validate

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


def _spec_view(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal apart from managedFields timestamps (a no-op write must not look like a change)."""
    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        for entry in out.get("metadata", {}).get("managedFields") or []:
            if isinstance(entry, dict):
                entry.pop("time", None)
        return out
    return strip(a) == strip(b)


def _suffix() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))


def decode_body(raw: bytes, content_type: str) -> Any:
    try:
        if "yaml" in content_type:
            return yaml.safe_load(raw.decode() or "null")
        return json.loads(raw.decode() or "null")
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"the body of the request could not be decoded: {exc}") from exc


class Api:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- helpers ------------------------------------------------------------------------------------
    def _require_namespace(self, ns: str) -> None:
        if self.store.get(NAMESPACE.key, "", ns) is None:
            raise errors.namespace_not_found(ns)

    def _check_body(self, res: Resource, ns: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        if body.get("kind") not in (None, res.kind):
            raise errors.bad_request(f"the kind of the provided object ({body.get('kind')}) does not match {res.kind}")
        if body.get("apiVersion") not in (None, res.api_version):
            raise errors.bad_request(f"the API version in the data ({body.get('apiVersion')}) does not match the "
                                     f"expected API version ({res.api_version})")
        body = copy.deepcopy(body)
        body["kind"], body["apiVersion"] = res.kind, res.api_version
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if res.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                         "on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        return body

    def _finish(self, res: Resource, old: dict[str, Any] | None, new: dict[str, Any], subresource: str) -> dict[str, Any]:
        """Carry identity over from `old`, keep status or everything-but-status per endpoint, default, validate."""
        meta = new["metadata"]
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = fields.now()
            if res.tracks_generation:
                meta["generation"] = 1
            if res.has_status:
                new["status"] = {}  # status is the controllers' to fill; a new object starts empty
        else:
            if subresource == "status":
                status = new.get("status")
                new = copy.deepcopy(old)
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
                meta = new["metadata"]
            elif res.has_status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            for k in ("uid", "creationTimestamp", "name", "namespace", "generation", "deletionTimestamp"):
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
                else:
                    meta.pop(k, None)
            if res.tracks_generation and subresource != "status":
                if _spec_view(old) != _spec_view(new):
                    meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if meta.get("labels") == {}:
            meta.pop("labels")
        if res.custom:
            validate_custom(res, new)  # no built-in defaulting or kind checks for a CRD's objects
        else:
            if res is CRD:
                check_crd(res, new)
                established(new)
            apply_defaults(new)
            validate(res, new, None if subresource == "status" else old)
        return new

    def _save(self, res: Resource, obj: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        if dry_run:
            return obj
        return self.store.put(res.key, obj)

    # -- verbs ---------------------------------------------------------------------------------------
    def get(self, res: Resource, ns: str, name: str) -> dict[str, Any]:
        obj = self.store.get(res.key, ns if res.namespaced else "", name)
        if obj is None:
            raise errors.not_found(res, name)
        return obj

    def list_objects(self, res: Resource, ns: str | None, labels: Matcher, flds: Matcher) -> tuple[list[dict[str, Any]], int]:
        with self.store.lock:
            rv = self.store.current_rv()
            items = self.store.select(res.key, ns if res.namespaced else None)
        return [o for o in items if labels(o) and flds(o)], rv

    def create(self, res: Resource, ns: str, body: Any, *, dry_run: bool = False, manager: str = "") -> dict[str, Any]:
        obj = self._check_body(res, ns, body)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = str(meta["generateName"]) + _suffix()
        for k in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "deletionTimestamp"):
            meta.pop(k, None)
        with self.store.lock:
            if res.namespaced:
                self._require_namespace(ns)
            if meta.get("name") and self.store.get(res.key, ns if res.namespaced else "", meta["name"]) is not None:
                raise errors.already_exists(res, meta["name"])
            new = self._finish(res, None, obj, "")
            if manager:
                fields.record_update(None, new, manager, "", res.api_version)
            return self._save(res, new, dry_run)

    def replace(self, res: Resource, ns: str, name: str, body: Any, *, dry_run: bool = False, manager: str = "",
                subresource: str = "") -> dict[str, Any]:
        obj = self._check_body(res, ns, body)
        if obj["metadata"].get("name") not in (None, name):
            raise errors.bad_request(f"the name of the object ({obj['metadata'].get('name')}) does not match the "
                                     f"name on the URL ({name})")
        obj["metadata"]["name"] = name
        with self.store.lock:
            old = self.get(res, ns, name)
            rv = obj["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise errors.stale(res, name)
            return self._update(res, old, obj, dry_run, manager, subresource)

    def _update(self, res: Resource, old: dict[str, Any], obj: dict[str, Any], dry_run: bool, manager: str,
                subresource: str) -> dict[str, Any]:
        if "managedFields" not in obj["metadata"]:
            obj["metadata"]["managedFields"] = old["metadata"].get("managedFields")
        new = self._finish(res, old, obj, subresource)
        if manager:
            fields.record_update(old, new, manager, subresource, res.api_version)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if _same(new, old):
            return old  # a no-op write does not bump resourceVersion, as on a real server
        return self._save(res, new, dry_run)

    def patch(self, res: Resource, ns: str, name: str, content_type: str, raw: bytes, *, dry_run: bool = False,
              manager: str = "", force: bool = False, subresource: str = "") -> dict[str, Any]:
        kind = PATCH_TYPES.get(content_type.split(";")[0].strip())
        if kind is None:
            raise errors.unsupported_media(content_type)
        if kind == "strategic":
            no_strategic_merge(res)  # custom resources have no patch strategy to merge by, as on a real server
        body = decode_body(raw, "yaml" if kind == "apply" else "json")
        if kind == "apply":
            return self.apply(res, ns, name, body, dry_run=dry_run, manager=manager, force=force,
                              subresource=subresource)
        with self.store.lock:
            old = self.get(res, ns, name)
            if kind == "json":
                patched = json_patch(old, body)
            elif not isinstance(body, dict):
                raise errors.bad_request("a merge patch must be a JSON object")
            elif kind == "merge":
                patched = merge_patch(old, body)
            else:
                patched = strategic_merge(old, body)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patched object is not a JSON object")
            rv = (patched.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise errors.stale(res, name)
            obj = self._check_body(res, ns, patched)
            obj["metadata"]["name"] = name
            return self._update(res, old, obj, dry_run, manager, subresource)

    def apply(self, res: Resource, ns: str, name: str, body: Any, *, dry_run: bool = False, manager: str = "",
              force: bool = False, subresource: str = "") -> dict[str, Any]:
        if not manager:
            raise errors.invalid(res, name, [("metadata.managedFields.manager", "FieldValueRequired",
                                              "Required value: is required for apply patch")])
        if not isinstance(body, dict) or not body.get("apiVersion") or not body.get("kind"):
            raise errors.bad_request("apiVersion and kind must be set in an apply patch")
        obj = self._check_body(res, ns, body)
        if obj["metadata"].get("name") not in (None, name):
            raise errors.bad_request(f"the name of the object ({obj['metadata'].get('name')}) does not match the "
                                     f"name on the URL ({name})")
        obj["metadata"]["name"] = name
        with self.store.lock:
            old = self.store.get(res.key, ns if res.namespaced else "", name)
            if old is None:
                if res.namespaced:
                    self._require_namespace(ns)
                merged = fields.apply(None, obj, manager, force, res.api_version)
                for k, v in obj["metadata"].items():
                    if k in ("name", "namespace", "generateName"):
                        merged["metadata"][k] = v
                new = self._finish(res, None, merged, "")
                return self._save(res, new, dry_run)
            if subresource == "status":
                merged = copy.deepcopy(old)
                merged["status"] = strategic_merge(old.get("status") or {}, obj.get("status") or {})
                return self._update(res, old, merged, dry_run, manager, "status")
            merged = fields.apply(old, obj, manager, force, res.api_version)
            new = self._finish(res, old, merged, "")
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if _same(new, old):
                return old
            return self._save(res, new, dry_run)

    def delete(self, res: Resource, ns: str, name: str, *, dry_run: bool = False) -> dict[str, Any]:
        with self.store.lock, self.store.batch():
            obj = self.get(res, ns, name)
            if res is NAMESPACE:
                obj["metadata"]["deletionTimestamp"] = fields.now()
                obj.setdefault("status", {})["phase"] = "Terminating"
                if not dry_run:
                    for key in list(self.store.objects):  # built-in and custom resources alike
                        for item in self.store.select(key, name):
                            self.store.remove(key, name, item["metadata"]["name"])
                    self.store.remove(res.key, "", name)
                return obj
            if not dry_run:
                if res is CRD:
                    remove_instances(self.store, obj)
                self.store.remove(res.key, ns if res.namespaced else "", name)
                self._collect_dependents(obj["metadata"]["uid"])
            if res.kind == "Pod":
                return obj
            details: dict[str, Any] = {"name": name, "kind": res.plural, "uid": obj["metadata"]["uid"]}
            if res.group:
                details["group"] = res.group
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _collect_dependents(self, uid: str) -> None:
        """Garbage collection: remove objects whose ownerReferences point at a deleted uid (recursively)."""
        pending = [uid]
        while pending:
            owner = pending.pop()
            for key, obj in list(self.store.all_objects()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == owner for r in refs):
                    meta = obj["metadata"]
                    self.store.remove(key, meta.get("namespace") or "", meta["name"])
                    pending.append(meta["uid"])

    def delete_collection(self, res: Resource, ns: str | None, labels: Matcher, flds: Matcher, *,
                          dry_run: bool = False) -> list[dict[str, Any]]:
        with self.store.lock, self.store.batch():
            items, _ = self.list_objects(res, ns, labels, flds)
            for item in items:
                if res is NAMESPACE or not dry_run:
                    self.delete(res, item["metadata"].get("namespace") or "", item["metadata"]["name"],
                                dry_run=dry_run)
            return items
