"""gitops.handoff against the stand-in, a test thread playing ArgoCD's application controller (it writes
.status.sync and .status.health as ArgoCD does). What this does not prove: see the README's GitOps section."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.errors import PermanentError
from tests.kube.conftest import kube_runbook
from tests.kubeapi.conftest import http
from tests.util import engine

CHARTS = ["rentguy", "psra", "wpcs", "ai-orchestration", "sevensa-infra"]
REPO_URL = "https://git.example.test/sevensa/platform.git"
APPLICATION_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "applications.argoproj.io"},
    "spec": {"group": "argoproj.io", "scope": "Namespaced",
             "names": {"kind": "Application", "plural": "applications", "singular": "application",
                       "listKind": "ApplicationList", "shortNames": ["app", "apps"]},
             # as ArgoCD's own CRD: no status subresource (the controller writes status on the object)
             "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}},
                           "additionalPrinterColumns": [
                               {"name": "Sync Status", "type": "string", "jsonPath": ".status.sync.status"},
                               {"name": "Health Status", "type": "string", "jsonPath": ".status.health.status"}]}]},
}
APPS = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications"


def runbook(tmp_path: Path, kubeapi: Any, timeout: float = 10, **with_: Any) -> Path:
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, phase_files=[], extra_phases={6: [
        {"id": "handoff", "uses": "gitops.handoff", "with": with_, "gate": {"timeout": timeout, "interval": 0.2},
         "retries": 0}]})
    doc = yaml.safe_load(rb.read_text())
    doc["gitops"] = {"repo_url": REPO_URL, "revision": "v1.0.0"}
    rb.write_text(yaml.safe_dump(doc, sort_keys=False))
    return rb


def install_argocd(kubeapi: Any) -> None:
    code, body = http("POST", f"{kubeapi.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions", APPLICATION_CRD)
    assert code == 201, body
    code, body = http("POST", f"{kubeapi.url}/api/v1/namespaces", {"metadata": {"name": "argocd"}})
    assert code == 201, body


Behaviour = Callable[[dict[str, Any], float], dict[str, Any] | None]


class FakeArgo:
    """Plays ArgoCD's application controller: polls the Applications and writes their status as
    `behaviour(app, seconds since first seen)` says (None: leave it). Bounded: stops after 30 s."""

    def __init__(self, kubeapi: Any, behaviour: Behaviour) -> None:
        self.url, self.behaviour = kubeapi.url, behaviour
        self.first_seen: dict[str, float] = {}
        self.written: list[tuple[float, str, str, str]] = []  # (time, app, sync, health)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 30
        while not self.stop.is_set() and time.monotonic() < deadline:
            code, body = http("GET", self.url + APPS)
            for app in (body.get("items") or []) if code == 200 else []:
                name = app["metadata"]["name"]
                first = self.first_seen.setdefault(name, time.monotonic())
                status = self.behaviour(app, time.monotonic() - first)
                if status is not None and status != app.get("status"):
                    http("PATCH", f"{self.url}{APPS}/{name}", {"status": status}, "application/merge-patch+json")
                    self.written.append((time.time(), name, status["sync"]["status"], status["health"]["status"]))
            self.stop.wait(0.05)

    def __enter__(self) -> FakeArgo:
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def status(app: dict[str, Any], sync: str, health: str, *, stale: bool = False,
           conditions: list[dict[str, str]] | None = None) -> dict[str, Any]:
    source = dict(app["spec"]["source"])
    if stale:
        source["targetRevision"] = "v0.9.0"
    out: dict[str, Any] = {"sync": {"status": sync, "comparedTo": {"source": source,
                                                                   "destination": app["spec"]["destination"]},
                                    "revision": "0123456789abcdef0123456789abcdef01234567"},
                           "health": {"status": health}}
    if conditions:
        out["conditions"] = conditions
    return out


@pytest.fixture
def argocd(kubeapi: Any) -> Iterator[Any]:
    install_argocd(kubeapi)
    yield kubeapi


def test_without_argocd_the_step_fails_with_the_reason(kubeapi: Any, tmp_path: Path) -> None:
    eng = engine(runbook(tmp_path, kubeapi), tmp_path / "state")
    with pytest.raises(PermanentError) as err:
        eng.run()
    assert f"ArgoCD is not installed on {kubeapi.url}" in str(err.value)
    assert "the CustomResourceDefinition applications.argoproj.io does not exist" in str(err.value)
    assert eng.status()["steps"][-1]["status"] == "failed"
    # the CRD exists but ArgoCD's namespace does not
    http("POST", f"{kubeapi.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions", APPLICATION_CRD)
    with pytest.raises(PermanentError, match="ArgoCD's namespace 'argocd' does not exist"):
        engine(runbook(tmp_path, kubeapi), tmp_path / "state").run()
    assert kubeapi.store.select("argoproj.io/applications") == []


def test_it_waits_until_every_application_is_synced_and_healthy(argocd: Any, tmp_path: Path) -> None:
    def behaviour(app: dict[str, Any], age: float) -> dict[str, Any] | None:
        if age < 0.5:  # what ArgoCD said about an older source: must not count
            return status(app, "Synced", "Healthy", stale=True)
        if age < 1.0:
            return status(app, "OutOfSync", "Missing")
        if age < 1.5 + 0.2 * CHARTS.index(app["metadata"]["name"]):
            return status(app, "Synced", "Progressing")
        return status(app, "Synced", "Healthy")

    eng = engine(runbook(tmp_path, argocd), tmp_path / "state")
    with FakeArgo(argocd, behaviour) as argo:
        eng.run()
    finished = eng.status()["steps"][-1]
    assert finished["status"] == "succeeded"
    last_healthy = max(t for t, _name, _sync, health in argo.written if health == "Healthy")
    stale_healthy = min(t for t, _name, _sync, health in argo.written if health == "Healthy")
    assert last_healthy > stale_healthy + 1.0  # the stale Healthy came first and was not taken
    apps = {a["metadata"]["name"]: a for a in argocd.store.select("argoproj.io/applications")}
    assert sorted(apps) == sorted(CHARTS)
    for app in apps.values():
        assert app["status"]["sync"]["status"] == "Synced" and app["status"]["health"]["status"] == "Healthy"
        assert app["spec"]["source"]["repoURL"] == REPO_URL and app["spec"]["source"]["targetRevision"] == "v1.0.0"
        assert app["spec"]["source"]["helm"]["valueFiles"] == ["values.yaml", "values-kube-test.yaml"]
        assert app["metadata"]["managedFields"][0]["manager"] == "migrator"
    # the engine finished the step only after the last Application turned Healthy
    assert eng.status()["steps"][-1].get("finished_at", time.time()) >= last_healthy
    # a second run changes nothing
    rv = argocd.store.current_rv()
    with FakeArgo(argocd, lambda app, age: status(app, "Synced", "Healthy")):
        again = engine(runbook(tmp_path, argocd), tmp_path / "state-2")
        again.run()
    assert any("already in place" in line for line in again.said)
    assert argocd.store.current_rv() == rv


def test_a_degraded_application_fails_the_gate_with_argocds_reason(argocd: Any, tmp_path: Path) -> None:
    def behaviour(app: dict[str, Any], age: float) -> dict[str, Any]:
        if app["metadata"]["name"] == "wpcs":
            return status(app, "Synced", "Degraded", conditions=[
                {"type": "ComparisonError", "message": "rpc error: repository not accessible"}])
        return status(app, "Synced", "Healthy")

    eng = engine(runbook(tmp_path, argocd, timeout=2), tmp_path / "state")
    with FakeArgo(argocd, behaviour), pytest.raises(PermanentError) as err:
        eng.run()
    msg = str(err.value)
    assert "waiting for ArgoCD: wpcs: Synced/Degraded (ComparisonError: rpc error: repository not accessible)" in msg
    assert "rentguy" not in msg.split("waiting for ArgoCD:")[1]  # only what is not ready is named
    assert eng.status()["steps"][-1]["status"] == "failed"


def test_rollback_deletes_the_applications_without_their_finalizer(argocd: Any, tmp_path: Path) -> None:
    # an Application that existed before the step is restored, not deleted
    existing = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "rentguy", "namespace": "argocd"},
                "spec": {"project": "legacy", "source": {"repoURL": "https://old.example.test/x.git"},
                         "destination": {"namespace": "rentguy"}}}
    code, _ = http("POST", argocd.url + APPS, existing)
    assert code == 201

    def behaviour(app: dict[str, Any], age: float) -> dict[str, Any] | None:
        return status(app, "Synced", "Healthy") if app["spec"]["project"] == "default" else None

    # someone else's Application of that name: taking its fields over needs force_conflicts
    with pytest.raises(PermanentError, match="conflicts with \"Python-urllib\""):
        engine(runbook(tmp_path, argocd), tmp_path / "state-refused").run()
    eng = engine(runbook(tmp_path, argocd, force_conflicts=True), tmp_path / "state")
    with FakeArgo(argocd, behaviour):
        eng.run()
    # ArgoCD's cascading-delete finalizer, as `argocd app set --finalizer` would add it
    code, _ = http("PATCH", f"{argocd.url}{APPS}/psra",
                   {"metadata": {"finalizers": ["resources-finalizer.argocd.argoproj.io"]}},
                   "application/merge-patch+json")
    assert code == 200
    rv = argocd.store.current_rv()
    assert engine(runbook(tmp_path, argocd, force_conflicts=True), tmp_path / "state").rollback(step_id="handoff") == 1
    left = {a["metadata"]["name"]: a for a in argocd.store.select("argoproj.io/applications")}
    assert sorted(left) == ["rentguy"] and left["rentguy"]["spec"]["project"] == "legacy"
    psra = [e for e in argocd.store.events_after(rv) if e.key == "argoproj.io/applications"
            and e.obj["metadata"]["name"] == "psra"]
    assert [e.type for e in psra] == ["MODIFIED", "DELETED"]
    assert not psra[0].obj["metadata"].get("finalizers")  # removed before the delete
