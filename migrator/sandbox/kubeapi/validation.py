"""The subset of API validation the migrator can trip over (422 Invalid)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from .errors import invalid
from .resources import Resource
from .selectors import selector_matches

Cause = tuple[str, str, str]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

# kinds whose names must be DNS-1123 labels rather than subdomains
_LABEL_NAMED = {"Namespace", "Service"}


def _name_causes(kind: str, name: str) -> list[Cause]:
    if kind in _LABEL_NAMED:
        if len(name) > 63 or not _LABEL.match(name):
            return [("metadata.name", "FieldValueInvalid",
                     f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case alphanumeric '
                     "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
                     "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")]
    elif len(name) > 253 or not _SUBDOMAIN.match(name):
        return [("metadata.name", "FieldValueInvalid",
                 f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
                 "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
                 "'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")]
    return []


def _label_causes(field: str, labels: Any) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [(field, "FieldValueInvalid", "Invalid value: must be a map of strings")]
    causes: list[Cause] = []
    for k, v in labels.items():
        name = k.rsplit("/", 1)[-1]
        if not isinstance(k, str) or len(name) > 63 or not _LABEL_NAME.match(name):
            causes.append((field, "FieldValueInvalid", f'Invalid value: "{k}": name part must consist of alphanumeric '
                           "characters, '-', '_' or '.'"))
        if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.match(v):
            causes.append((f"{field}", "FieldValueInvalid", f'Invalid value: "{v}": a valid label must be an empty '
                           "string or consist of alphanumeric characters, '-', '_' or '.'"))
    return causes


def _containers(field: str, containers: Any) -> list[Cause]:
    if not isinstance(containers, list) or not containers:
        return [(field, "FieldValueRequired", "Required value")]
    causes: list[Cause] = []
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not c.get("name"):
            causes.append((f"{field}[{i}].name", "FieldValueRequired", "Required value"))
        elif not c.get("image"):
            causes.append((f"{field}[{i}].image", "FieldValueRequired", "Required value"))
    return causes


def _workload(obj: dict[str, Any], replicas: bool = True) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    selector = spec.get("selector")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector:
        causes.append(("spec.selector", "FieldValueRequired", "Required value"))
    elif not selector_matches(selector, labels):
        causes.append(("spec.template.metadata.labels", "FieldValueInvalid",
                       f"Invalid value: {labels!r}: `selector` does not match template `labels`"))
    count = spec.get("replicas") if replicas else None  # a DaemonSet has no replicas
    if count is not None and (not isinstance(count, int) or count < 0):
        causes.append(("spec.replicas", "FieldValueInvalid",
                       f"Invalid value: {count}: must be greater than or equal to 0"))
    causes += _containers("spec.template.spec.containers", ((spec.get("template") or {}).get("spec") or {}).get("containers"))
    return causes


def _daemonset(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = _workload(obj, replicas=False)
    restart = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy", "Always")
    if restart != "Always":
        causes.append(("spec.template.spec.restartPolicy", "FieldValueNotSupported",
                       f'Unsupported value: "{restart}": supported values: "Always"'))
    strategy = spec.get("updateStrategy") or {}
    kind = strategy.get("type")
    if kind not in ("OnDelete", "RollingUpdate"):
        causes.append(("spec.updateStrategy.type", "FieldValueNotSupported",
                       f'Unsupported value: "{kind}": supported values: "OnDelete", "RollingUpdate"'))
    elif kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
        if unavailable in (0, "0%") and surge in (0, "0%"):
            causes.append(("spec.updateStrategy.rollingUpdate.maxUnavailable", "FieldValueInvalid",
                           "Invalid value: 0: may not be 0 when `maxSurge` is 0"))
    return causes


def _kind_causes(obj: dict[str, Any]) -> list[Cause]:
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet"):
        return _workload(obj)
    if kind == "DaemonSet":
        return _daemonset(obj)
    if kind == "Job":
        spec = obj.get("spec") or {}
        tspec = (spec.get("template") or {}).get("spec") or {}
        job_causes = _containers("spec.template.spec.containers", tspec.get("containers"))
        if tspec.get("restartPolicy") not in ("Never", "OnFailure"):
            job_causes.append(("spec.template.spec.restartPolicy", "FieldValueNotSupported",
                               f'Unsupported value: "{tspec.get("restartPolicy")}": supported values: "OnFailure", "Never"'))
        if not isinstance(spec.get("backoffLimit", 6), int) or spec.get("backoffLimit", 6) < 0:
            job_causes.append(("spec.backoffLimit", "FieldValueInvalid", "Invalid value: must be greater than or equal to 0"))
        return job_causes
    if kind == "Pod":
        return _containers("spec.containers", (obj.get("spec") or {}).get("containers"))
    if kind == "Service":
        causes: list[Cause] = []
        for i, p in enumerate((obj.get("spec") or {}).get("ports") or []):
            if not isinstance(p, dict) or not isinstance(p.get("port"), int) or not 0 < p["port"] < 65536:
                causes.append((f"spec.ports[{i}].port", "FieldValueInvalid", "Invalid value: must be between 1 and 65535"))
        return causes
    if kind in ("ConfigMap", "Secret"):
        causes = []
        for field in ("data", "binaryData"):
            for k, v in (obj.get(field) or {}).items():
                if not _CONFIG_KEY.match(k):
                    causes.append((f"{field}[{k}]", "FieldValueInvalid", f'Invalid value: "{k}": a valid config key '
                                   "must consist of alphanumeric characters, '-', '_' or '.'"))
                if not isinstance(v, str):
                    causes.append((f"{field}[{k}]", "FieldValueInvalid", "Invalid value: must be a string"))
                elif kind == "Secret" and field == "data":
                    try:
                        base64.b64decode(v, validate=True)
                    except (binascii.Error, ValueError):
                        causes.append((f"data[{k}]", "FieldValueInvalid", "Invalid value: illegal base64 data"))
        return causes
    return []


def validate_meta(res: Resource, obj: dict[str, Any]) -> list[Cause]:
    """Name, labels and annotations: what every object, built-in or custom, is checked for."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    causes: list[Cause] = []
    if not name:
        causes.append(("metadata.name", "FieldValueRequired", "Required value: name or generateName is required"))
    else:
        causes += _name_causes(res.kind, name)
    causes += _label_causes("metadata.labels", meta.get("labels"))
    if meta.get("annotations") is not None and not all(isinstance(v, str) for v in (meta["annotations"] or {}).values()):
        causes.append(("metadata.annotations", "FieldValueInvalid", "Invalid value: values must be strings"))
    return causes


def _update_causes(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """Fields the real API server refuses to change on an update (ValidateSecretUpdate)."""
    if new.get("kind") != "Secret":
        return []
    causes: list[Cause] = []
    if (new.get("type") or "Opaque") != (old.get("type") or "Opaque"):
        causes.append(("type", "FieldValueInvalid", f'Invalid value: "{new.get("type")}": field is immutable'))
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            causes.append(("immutable", "FieldValueForbidden", "Forbidden: field is immutable when `immutable` is set"))
        if (new.get("data") or {}) != (old.get("data") or {}):
            causes.append(("data", "FieldValueForbidden", "Forbidden: field is immutable when `immutable` is set"))
    return causes


def validate(res: Resource, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    name = (obj.get("metadata") or {}).get("name") or ""
    causes = validate_meta(res, obj) + _kind_causes(obj) + ([] if old is None else _update_causes(old, obj))
    if causes:
        raise invalid(res, name, causes)
