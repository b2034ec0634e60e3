"""The ArgoCD Applications of the architecture document: one per chart of `migrate render`.

Automated sync with prune and selfHeal, `CreateNamespace=true`, and `ServerSideApply=true` so that
ArgoCD applies as a field manager of its own beside `migrator` instead of replacing the objects
(see the README's GitOps handover). No `resources-finalizer.argocd.argoproj.io`: deleting an
Application (which is what rolling back gitops.handoff does) leaves the workloads where they are.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from migrator.errors import PermanentError
from migrator.manifests.charts import CHARTS
from migrator.runbook.model import GitopsConfig

API_VERSION = "argoproj.io/v1alpha1"
CRD_NAME = "applications.argoproj.io"
LABEL = "sevensa.migrator/environment"


def destination_namespace(chart: str, vars_: Mapping[str, Any]) -> str:
    key = CHARTS[chart][0]
    ns = (vars_.get("namespaces") or {}).get(key)
    if not isinstance(ns, str) or not ns:
        raise PermanentError(f"vars.namespaces.{key} is not set: chart {chart} has no namespace to deploy to")
    return ns


def application(chart: str, environment: str, vars_: Mapping[str, Any], cfg: GitopsConfig) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Application",
        "metadata": {"name": chart, "namespace": cfg.argocd_namespace,
                     "labels": {"app.kubernetes.io/part-of": "sevensa", LABEL: environment}},
        "spec": {
            "project": cfg.project,
            "source": {
                "repoURL": cfg.repo_url,
                "targetRevision": cfg.revision,
                "path": posixpath.join(cfg.path, "charts", chart) if cfg.path else f"charts/{chart}",
                "helm": {"releaseName": chart, "valueFiles": ["values.yaml", f"values-{environment}.yaml"]},
            },
            "destination": {"server": cfg.destination_server, "namespace": destination_namespace(chart, vars_)},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"],
            },
        },
    }


def applications(charts: list[str], environment: str, vars_: Mapping[str, Any],
                 cfg: GitopsConfig) -> list[dict[str, Any]]:
    return [application(c, environment, vars_, cfg) for c in charts]


def health(app: Mapping[str, Any]) -> tuple[bool, str]:
    """(Synced and Healthy at the wanted revision, a one-line account of where it is)."""
    name = (app.get("metadata") or {}).get("name", "?")
    status = app.get("status") or {}
    sync = (status.get("sync") or {}).get("status") or "Unknown"
    healthy = (status.get("health") or {}).get("status") or "Unknown"
    op = status.get("operationState") or {}
    detail = []
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and str(cond.get("type", "")).endswith("Error"):
            detail.append(f"{cond.get('type')}: {cond.get('message', '')}".strip())
    if op.get("phase") in ("Failed", "Error"):
        detail.append(f"sync {op.get('phase')}: {op.get('message', '')}".strip())
    ok = sync == "Synced" and healthy == "Healthy" and not detail
    text = f"{name}: {sync}/{healthy}"
    if detail:
        text += " (" + "; ".join(detail)[:300] + ")"
    return ok, text
