"""The Helm engine: Helm v4's own Go SDK through `helm-python-sdk` (libhelm_c over ctypes, no `helm`
binary). Offline only: rendering and linting charts on disk; nothing here talks to a cluster.

Rendered manifests are parsed with Helm's own YAML parser (`values_from_yaml`, Go's sigs.k8s.io/yaml),
so a document that PyYAML and the API server's client would read differently is read as Go reads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from migrator.errors import PermanentError

INSTALL_HINT = "pip install 'helm-python-sdk==0.2.2' (in the dev and gitops extras: pip install -e '.[gitops]')"
_SEPARATOR = re.compile(r"(?m)^---\s*$")
WARNING = 2  # lint severities: 1 info, 2 warning, 3 error


def _helm() -> Any:
    try:
        import helm_python
    except ImportError:
        raise PermanentError(f"the Helm engine is not installed: {INSTALL_HINT}") from None
    except OSError as exc:  # the shared library could not be loaded (wrong platform, missing libc)
        raise PermanentError(f"the Helm engine (libhelm_c) could not be loaded: {exc}") from None
    return helm_python


def version() -> str:
    helm = _helm()
    return f"Helm SDK {helm.helm_sdk_version()} (libhelm_c {helm.helm_c_version()})"


def lint(chart_dir: Path, *, kube_version: str | None = None, values_file: Path | None = None) -> list[str]:
    """Warnings and errors of `helm lint --strict` on the chart and on each subchart (info lines dropped);
    `values_file`: the parent linted with those values over its defaults (`helm lint -f FILE`).

    The SDK's `with_subcharts=True` lints the parent only (0.2.2: total_charts_linted stays 1 and a
    broken subchart template goes unreported), so each directory under charts/ is linted on its own."""
    helm = _helm()
    found: list[str] = []
    subcharts = sorted(p for p in (chart_dir / "charts").glob("*") if (p / "Chart.yaml").is_file())
    values = helm.values_from_yaml(values_file.read_text(encoding="utf-8")) if values_file else None
    if values_file and not values:
        return []  # the same as the chart's defaults: linted without a file
    for path in [chart_dir] if values_file else [chart_dir, *subcharts]:
        label = str(path.relative_to(chart_dir.parent))
        try:
            report = helm.lint(str(path), values or None, strict=True, kube_version=kube_version)
        except helm.HelmError as exc:
            found.append(f"{label}: {exc}")
            continue
        found += [f"{label}: {m.get('path')}: {m.get('error')}" for m in report.get("messages") or []
                  if int(m.get("severity") or 0) >= WARNING]
        found += [f"{label}: {e}" for e in report.get("errors") or []
                  if not any(e == m.get("error") for m in report.get("messages") or [])]
    return found


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`helm -f a -f b`: maps merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_documents(text: str) -> list[dict[str, Any]]:
    helm = _helm()
    out = []
    for doc in _SEPARATOR.split(text):
        if not doc.strip() or all(not line.strip() or line.lstrip().startswith("#") for line in doc.splitlines()):
            continue
        obj = helm.values_from_yaml(doc)
        if obj:
            out.append(obj)
    return out


def render(chart_dir: Path, value_files: list[Path], *, release: str, namespace: str) -> list[dict[str, Any]]:
    """`helm template RELEASE CHART -n NAMESPACE -f FILE...` (what ArgoCD runs for a Helm source), parsed:
    every object the chart renders, in template order. The chart's own values.yaml is its defaults."""
    helm = _helm()
    values: dict[str, Any] = {}
    for path in value_files:
        if path.resolve() == (chart_dir / "values.yaml").resolve():
            continue  # the chart's defaults: coalesced by the engine itself
        values = deep_merge(values, helm.values_from_yaml(path.read_text(encoding="utf-8")))
    try:
        with helm.Chart.load(str(chart_dir)) as chart:
            chart.validate_schema(chart.merge_values(values))
            manifests = chart.render(values, name=release, namespace=namespace, is_install=True)
    except helm.HelmError as exc:
        raise PermanentError(f"helm template {chart_dir.name}: {exc}") from None
    objects: list[dict[str, Any]] = []
    for name in sorted(manifests):
        try:
            objects += parse_documents(manifests[name])
        except helm.HelmError as exc:
            raise PermanentError(f"helm template {chart_dir.name}: {name} is not YAML: {exc}") from None
    return objects
