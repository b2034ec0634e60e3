"""Phase 1 through the engine against the API stand-in: created once, then nothing changes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from migrator.manifests import render
from migrator.steps.kube import namespace_objects, runbook_namespaces
from tests.kube.conftest import kube_runbook
from tests.util import REPO, engine, migrate

KUBECTL = REPO / ".venv" / "bin" / "kubectl"


def phase1_objects() -> list[dict[str, Any]]:
    vars_ = render.variables({"domain": "test.example"}, "standard")
    namespaces = namespace_objects(runbook_namespaces(vars_))
    return namespaces + [o for s in ("rbac", "network-policies") for o in render.render_set(s, vars_)]


def versions(kubeapi: Any) -> dict[str, str]:
    """resourceVersion of every object phase 1 applies, read from the stand-in's store."""
    from migrator.adapters.kube import KINDS, Ref

    out = {}
    for obj in phase1_objects():
        ref = Ref.of(obj)
        kind = KINDS[ref.kind]
        group = kind.api_version.rpartition("/")[0]
        live = kubeapi.store.get(f"{group}/{kind.plural}", ref.namespace or "", ref.name)
        assert live is not None, f"{ref} missing"
        out[str(ref)] = live["metadata"]["resourceVersion"]
    return out


def test_phase1_creates_namespaces_policies_accounts_then_changes_nothing(kubeapi: Any, tmp_path: Path) -> None:
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig)
    eng = engine(rb, tmp_path / "state")
    assert eng.run([1]) == 4
    assert {s["status"] for s in eng.status()["steps"]} == {"succeeded"}
    before, rv = versions(kubeapi), kubeapi.store.current_rv()
    ns = kubeapi.store.get("/namespaces", "", "rentguy")
    assert ns["metadata"]["labels"]["name"] == "rentguy"
    assert ns["metadata"]["managedFields"][0]["manager"] == "migrator"
    sa = kubeapi.store.get("/serviceaccounts", "rentguy", "rentguy-api")
    assert sa["automountServiceAccountToken"] is False

    # Again with a fresh state: every step's check finds its effect in place, nothing is written.
    again = engine(rb, tmp_path / "state-2")
    again.run([1])
    assert sum("already in place" in line for line in again.said) == 4, again.said
    assert versions(kubeapi) == before
    assert kubeapi.store.current_rv() == rv

    # The dry run through the real CLI (server-side dryRun=All where it would apply): nothing changes.
    proc = migrate("plan", "--phase", "1", "--runbook", str(rb), "--state-dir", str(tmp_path / "state-3"))
    assert proc.returncode == 0, proc.stderr
    assert "in place" in proc.stdout
    assert versions(kubeapi) == before
    assert kubeapi.store.current_rv() == rv
    assert not (tmp_path / "state-3" / "kube-test.state.json").exists()


def test_plan_on_an_empty_cluster_dry_runs_and_changes_nothing(kubeapi: Any, tmp_path: Path) -> None:
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig)
    rv = kubeapi.store.current_rv()
    eng = engine(rb, tmp_path / "state")
    plan = {p["id"]: p for p in eng.plan([1])}
    assert "create Namespace rentguy" in plan["namespaces"]["changes"]
    assert any("namespaces that do not exist yet" in u for u in plan["network-policies"]["unknowns"])
    assert kubeapi.store.current_rv() == rv
    assert kubeapi.store.get("/namespaces", "", "rentguy") is None


def test_rollback_of_phase1_removes_what_it_created(kubeapi: Any, tmp_path: Path) -> None:
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig)
    eng = engine(rb, tmp_path / "state")
    eng.run([1])
    assert eng.rollback(phase=1) == 4
    assert kubeapi.store.get("/namespaces", "", "rentguy") is None
    assert kubeapi.store.get("rbac.authorization.k8s.io/clusterroles", "", "sevensa-traefik") is None
    assert kubeapi.store.get("/namespaces", "", "default") is not None  # not ours: untouched
    # ...and a run after the rollback creates everything again
    engine(rb, tmp_path / "state").run([1])
    assert kubeapi.store.get("/namespaces", "", "rentguy") is not None


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)}
    return subprocess.run([str(KUBECTL), *args], env=env, capture_output=True, text=True, timeout=60)


def test_kubectl_shows_what_the_migrator_created(kubeapi: Any, tmp_path: Path) -> None:
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig)
    engine(rb, tmp_path / "state").run([1])

    ns = kubectl(kubeapi.kubeconfig, "get", "ns")
    assert ns.returncode == 0, ns.stderr
    for name in ("rentguy", "psra", "wpcs", "ai", "infra", "monitoring", "logging", "ingress"):
        assert any(line.split()[:2] == [name, "Active"] for line in ns.stdout.splitlines()), ns.stdout

    pols = kubectl(kubeapi.kubeconfig, "get", "networkpolicy", "-A")
    assert pols.returncode == 0, pols.stderr
    rows = [line.split() for line in pols.stdout.splitlines()[1:]]
    assert ["rentguy", "default-deny-all"] in [r[:2] for r in rows]
    assert len(rows) == len([o for o in phase1_objects() if o["kind"] == "NetworkPolicy"])

    sas = kubectl(kubeapi.kubeconfig, "get", "sa", "-n", "rentguy", "-o", "json")
    assert sas.returncode == 0, sas.stderr
    names = {i["metadata"]["name"] for i in json.loads(sas.stdout)["items"]}
    assert {"rentguy-frontend", "rentguy-api", "rentguy-db"} <= names
