"""gitops.handoff: hand the migrated platform to ArgoCD once the cutover is done.

It applies the ArgoCD Applications that `migrate render` writes (one per chart, from the runbook's
`gitops:` section) into the ArgoCD namespace, like any manifest step (prior state recorded, server-side
apply as `migrator`), and its gate waits until every Application reports Synced and Healthy for the
source it was given. Where ArgoCD is not installed (no CustomResourceDefinition applications.argoproj.io)
it fails with that reason; it never passes without an ArgoCD that took the platform over.

Rollback deletes the Applications it created (their finalizers removed first, so ArgoCD never cascades
the deletion to the workloads) and puts back any it changed: afterwards nothing selfHeals against the
migrator's own rollbacks.
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from migrator.adapters.kube import Ref
from migrator.errors import GateNotReady, PermanentError
from migrator.manifests import argocd
from migrator.manifests.charts import CHARTS
from migrator.steps.base import Check, Plan, step_type
from migrator.steps.kube import ManifestParams, ManifestStep


class HandoffParams(ManifestParams):
    charts: list[str] | None = None  # default: all five

    @field_validator("charts")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if name not in CHARTS:
                raise ValueError(f"unknown chart {name!r} (known: {', '.join(CHARTS)})")
        return value


@step_type("gitops.handoff")
class GitopsHandoff(ManifestStep):
    """Apply the ArgoCD Applications and wait until each is Synced and Healthy."""

    Params = HandoffParams
    charted = False  # the Applications are not part of the charts they deploy
    description = "hand the platform to ArgoCD: Applications applied, each Synced and Healthy"

    def _config(self) -> Any:
        cfg = self.ctx.runbook.file.gitops
        if cfg is None:
            raise PermanentError(f"gitops.handoff: the runbook {self.ctx.runbook.path} has no gitops: section "
                                 "(repo_url, revision): it names what the Applications deploy")
        return cfg

    def templates(self) -> list[dict[str, Any]]:
        charts = self.params.charts or list(CHARTS)
        return argocd.applications(charts, self.ctx.runbook.name, self.variables(), self._config())

    def _argocd_problem(self) -> str | None:
        """Why the Applications cannot be applied here, or None."""
        kube = self.kube()
        if kube.get(Ref("CustomResourceDefinition", argocd.CRD_NAME)) is None:
            return (f"ArgoCD is not installed on {kube.describe()}: the CustomResourceDefinition {argocd.CRD_NAME} "
                    "does not exist (install ArgoCD first, or leave gitops.handoff out of this runbook's phases)")
        ns = self._config().argocd_namespace
        if kube.get(Ref("Namespace", ns)) is None:
            return (f"ArgoCD's namespace {ns!r} does not exist on {kube.describe()} (gitops.argocd_namespace in the "
                    "runbook names where ArgoCD runs)")
        return None

    def check(self) -> Check:
        problem = self._argocd_problem()
        if problem:
            return Check(False, problem)
        return super().check()

    def plan(self) -> Plan:
        problem = self._argocd_problem()
        if problem:
            return Plan(unknowns=[f"the run will stop here: {problem}"])
        plan = super().plan()
        plan.waits.append(f"ArgoCD syncing {len(self.objects())} Applications until each is Synced and Healthy "
                          "(ArgoCD's work: not predictable)")
        return plan

    def apply(self) -> None:
        problem = self._argocd_problem()
        if problem:
            raise PermanentError(problem)
        super().apply()

    def verify(self) -> None:
        kube = self.kube()
        waiting = []
        for app in self.objects():
            ref = Ref.of(app)
            live = kube.get(ref)
            if live is None:
                raise PermanentError(f"{ref} is gone: something deleted it while waiting for ArgoCD")
            ok, text = argocd.health(live)
            compared = ((live.get("status") or {}).get("sync") or {}).get("comparedTo") or {}
            if ok and compared.get("source") != app["spec"]["source"]:
                ok, text = False, f"{ref.name}: ArgoCD has not compared the source applied yet ({text})"
            if not ok:
                waiting.append(text)
        if waiting:
            raise GateNotReady("waiting for ArgoCD: " + " | ".join(waiting))
        self.ctx.log.info("argocd synced", applications=len(self.objects()))

    def rollback(self) -> None:
        kube = self.kube()
        for entry in self.ctx.facts.get("objects") or []:
            if entry.get("existed") or entry.get("kind") != "Application":
                continue
            ref = Ref("Application", entry["name"], entry.get("namespace"))
            live = kube.get(ref)
            if live is not None and (live.get("metadata") or {}).get("finalizers"):
                # resources-finalizer.argocd.argoproj.io would make ArgoCD delete every workload it deploys
                status, doc = kube.request("PATCH", ref.path(), None, {"metadata": {"finalizers": None}},
                                           "application/merge-patch+json")
                if status != 200:
                    raise PermanentError(f"rollback {ref}: could not remove its finalizers ({doc.get('message')}); "
                                         "not deleted, so that ArgoCD deletes none of the workloads")
        super().rollback()
