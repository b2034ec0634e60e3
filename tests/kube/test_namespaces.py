"""kube.namespaces creates the runbook's namespaces, not a hard-wired platform's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.kube.conftest import kube_runbook
from tests.util import engine, migrate


def _live(kubeapi: Any) -> set[str]:
    return {o["metadata"]["name"] for o in kubeapi.store.select("/namespaces")} - {
        "default", "kube-system", "kube-public", "kube-node-lease"}


def test_namespaces_from_the_runbooks_vars(kubeapi: Any, tmp_path: Path) -> None:
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, phase_files=[], extra_phases={1: [
        {"id": "namespaces", "uses": "kube.namespaces", "with": {"labels": {"team": "acme"}}}]},
        vars={"namespaces": {"shop": "acme-shop", "db": "acme-db"}})
    assert engine(rb, tmp_path / "state").run() == 1
    assert _live(kubeapi) == {"acme-shop", "acme-db"}
    labels = kubeapi.store.get("/namespaces", "", "acme-shop")["metadata"]["labels"]
    assert labels["name"] == "acme-shop" and labels["team"] == "acme"
    assert labels["app.kubernetes.io/managed-by"] == "migrator"
    engine(rb, tmp_path / "state").rollback(step_id="namespaces")
    assert _live(kubeapi) == set()


def test_namespaces_named_in_the_step(kubeapi: Any, tmp_path: Path) -> None:
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, phase_files=[], extra_phases={1: [
        {"id": "ns", "uses": "kube.namespaces", "with": {"names": ["only-this"]}}]})
    assert engine(rb, tmp_path / "state").run() == 1
    assert _live(kubeapi) == {"only-this"}


def test_a_bad_namespace_name_is_refused_at_load(tmp_path: Path) -> None:
    rb = kube_runbook(tmp_path / "rb", tmp_path / "kubeconfig", phase_files=[], extra_phases={1: [
        {"id": "ns", "uses": "kube.namespaces", "with": {"names": ["Bad_Name"]}}]})
    proc = migrate("plan", "-r", str(rb), "--state-dir", str(tmp_path / "st"))
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "extra1.yaml" in line and "'Bad_Name' is not a namespace name" in line, proc.stderr
