"""Rendering the manifests: parse the YAML first, then substitute `${vars.x}` in string values.

No template language, no code execution: substitution happens on parsed data, so a variable can never
inject YAML structure. A value that is exactly one reference keeps the variable's type (replicas stay
numbers); `$${` writes a literal `${`. The same files serve production, kind and the sandbox.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from migrator.errors import PermanentError
from migrator.runbook.interpolate import Unresolved, interpolate, lookup_path

HERE = Path(__file__).resolve().parent

# Apply order: what others refer to comes first (a Deployment's ServiceAccount, ConfigMap, claim...).
KIND_ORDER = (
    "Namespace", "StorageClass", "ServiceAccount", "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding",
    "ConfigMap", "Secret", "PersistentVolumeClaim", "Service", "StatefulSet", "Deployment", "DaemonSet",
    "Ingress", "NetworkPolicy",
)


def available_sets() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml") if p.stem != "defaults")


def defaults() -> dict[str, Any]:
    data = yaml.safe_load((HERE / "defaults.yaml").read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def variables(runbook_vars: Mapping[str, Any] | None = None, storage_class: str | None = None,
              overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """defaults.yaml < the target's storage class < the runbook's vars < the step's vars."""
    out = defaults()
    if storage_class:
        out["storage_class"] = storage_class
    return deep_merge(deep_merge(out, runbook_vars or {}), overrides or {})


def render_docs(docs: Iterable[Any], vars_: Mapping[str, Any], source: str) -> list[dict[str, Any]]:
    def lookup(namespace: str, key: str) -> Any:
        if namespace != "vars":
            raise Unresolved(f"{namespace}.{key}", f"only ${{vars.x}} is known in manifests, not ${{{namespace}.{key}}}")
        return lookup_path(vars_, key, "vars")

    out: list[dict[str, Any]] = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        try:
            obj = interpolate(doc, lookup)
        except Unresolved as exc:
            raise PermanentError(f"{source} (document {index + 1}): {exc.why}; set it in the runbook's vars: "
                                 "or the step's vars:") from None
        if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion") \
                or not (obj.get("metadata") or {}).get("name"):
            raise PermanentError(f"{source} (document {index + 1}): not a Kubernetes object "
                                 "(apiVersion, kind and metadata.name are required)")
        out.append(obj)
    return out


def load_file(path: Path) -> list[Any]:
    try:
        return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise PermanentError(f"manifest file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PermanentError(f"manifest file {path}: invalid YAML: {exc}") from None


def render_set(name: str, vars_: Mapping[str, Any]) -> list[dict[str, Any]]:
    path = HERE / f"{name}.yaml"
    if name == "defaults" or not path.is_file():
        raise PermanentError(f"no manifest set {name!r} (known: {', '.join(available_sets())})")
    return render_docs(load_file(path), vars_, f"manifest set {name}")


def render_file(path: Path, vars_: Mapping[str, Any]) -> list[dict[str, Any]]:
    return render_docs(load_file(path), vars_, str(path))


def order_key(obj: Mapping[str, Any]) -> int:
    kind = str(obj.get("kind"))
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def sort_objects(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dependency order (stable within a kind); duplicates are an error, not a silent overwrite."""
    objs = list(items)
    seen: set[str] = set()
    for obj in objs:
        k = describe(obj)
        if k in seen:
            raise PermanentError(f"{k} is defined twice in the step's manifests")
        seen.add(k)
    return sorted(objs, key=order_key)


def describe(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"
