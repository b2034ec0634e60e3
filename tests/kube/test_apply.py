"""kube.apply, kube.secret and kube.storage-check against the stand-in: gates, reasons, rollback."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.errors import PermanentError
from tests.kube.conftest import kube_runbook
from tests.util import engine

APP = {"apiVersion": "apps/v1", "kind": "Deployment",
       "metadata": {"name": "rentguy-api", "namespace": "rentguy", "labels": {"app": "rentguy", "component": "api"}},
       "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "rentguy", "component": "api"}},
                "template": {"metadata": {"labels": {"app": "rentguy", "component": "api"}},
                             "spec": {"containers": [{"name": "api", "image": "${vars.images.rentguy-api}"}]}}}}


def apply_step(step_id: str, timeout: float = 3, **with_: Any) -> dict[str, Any]:
    return {"id": step_id, "uses": "kube.apply", "with": with_, "gate": {"timeout": timeout, "interval": 0.2},
            "retries": 0}


def test_a_failing_deployment_fails_its_gate_with_the_reason_and_rollback_removes_it(kubeapi: Any, tmp_path: Path) -> None:
    (tmp_path / "rb").mkdir()
    (tmp_path / "rb" / "api.yaml").write_text(yaml.safe_dump(APP))
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, extra_phases={2: [apply_step("api", files=["api.yaml"])]})
    kubeapi.set_failure("rentguy", "rentguy-api", "CrashLoopBackOff: cannot reach rentguy-db:5432")
    eng = engine(rb, tmp_path / "state")
    eng.run([1])
    with pytest.raises(PermanentError) as err:
        eng.run([2])
    msg = str(err.value)
    assert "rentguy/rentguy-api not ready: 0/3 ready" in msg
    assert "pod rentguy-api-" in msg and "CrashLoopBackOff" in msg
    assert "event BackOff:" in msg and "cannot reach rentguy-db:5432" in msg
    assert eng.status()["steps"][-1]["status"] == "failed"
    assert kubeapi.store.get("apps/deployments", "rentguy", "rentguy-api") is not None

    assert engine(rb, tmp_path / "state").rollback(step_id="api") == 1
    assert kubeapi.store.get("apps/deployments", "rentguy", "rentguy-api") is None
    assert kubeapi.store.get("/namespaces", "", "rentguy") is not None  # phase 1's, not this step's


def test_a_healthy_set_rolls_out_and_a_second_run_changes_nothing(kubeapi: Any, tmp_path: Path) -> None:
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig,
                      extra_phases={2: [apply_step("rentguy", timeout=20, sets=["rentguy"])]},
                      vars={"domain": "test.example", "replicas": {"rentguy-api": 2}})
    eng = engine(rb, tmp_path / "state")
    eng.run()
    dep = kubeapi.store.get("apps/deployments", "rentguy", "rentguy-api")
    assert dep["spec"]["replicas"] == 2 and dep["status"]["readyReplicas"] == 2
    assert kubeapi.store.get("apps/statefulsets", "rentguy", "rentguy-db")["spec"]["volumeClaimTemplates"]
    rv = dep["metadata"]["resourceVersion"]
    again = engine(rb, tmp_path / "state-2")
    again.run([2])
    assert any("already in place" in line for line in again.said)
    assert kubeapi.store.get("apps/deployments", "rentguy", "rentguy-api")["metadata"]["resourceVersion"] == rv


def test_rollback_restores_what_the_step_changed(kubeapi: Any, tmp_path: Path) -> None:
    from migrator.adapters.kube import KubeCluster
    from migrator.runbook.environment import TargetConfig

    kube = KubeCluster(TargetConfig(kubeconfig=str(kubeapi.kubeconfig), ingress_address="127.0.0.1"), tmp_path)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rentguy"}})
    # someone else's ConfigMap, with a key we do not set
    from migrator.sandbox.kubeapi.resources import BY_KEY

    kubeapi.api.create(BY_KEY["/configmaps"], "rentguy", {"metadata": {"name": "rentguy-config"}, "data": {"OLD": "1", "NODE_ENV": "dev"}},
                       manager="kubectl")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rentguy-config", "namespace": "rentguy"},
          "data": {"NODE_ENV": "production"}}
    (tmp_path / "rb").mkdir()
    (tmp_path / "rb" / "cm.yaml").write_text(yaml.safe_dump(cm))
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, phase_files=[],
                      extra_phases={2: [apply_step("cm", files=["cm.yaml"], force_conflicts=True)]})
    eng = engine(rb, tmp_path / "state")
    eng.run()
    assert kubeapi.store.get("/configmaps", "rentguy", "rentguy-config")["data"]["NODE_ENV"] == "production"
    facts = json.loads((tmp_path / "state" / "kube-test.state.json").read_text())["steps"]["cm"]["facts"]
    assert facts["objects"][0]["existed"] is True
    assert facts["objects"][0]["prior"]["data"] == {"OLD": "1", "NODE_ENV": "dev"}
    engine(rb, tmp_path / "state").rollback(step_id="cm")
    assert kubeapi.store.get("/configmaps", "rentguy", "rentguy-config")["data"] == {"OLD": "1", "NODE_ENV": "dev"}
    kube.close()


def test_a_conflict_without_force_names_the_fix(kubeapi: Any, tmp_path: Path) -> None:
    from migrator.sandbox.kubeapi.resources import BY_KEY

    kubeapi.api.create(BY_KEY["/namespaces"], "", {"metadata": {"name": "rentguy"}})
    kubeapi.api.apply(BY_KEY["/configmaps"], "rentguy", "c",
                      {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "rentguy"},
                       "data": {"K": "theirs"}}, manager="helm")
    (tmp_path / "rb").mkdir()
    (tmp_path / "rb" / "c.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "rentguy"}, "data": {"K": "ours"}}))
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, phase_files=[], extra_phases={2: [apply_step("c", files=["c.yaml"])]})
    with pytest.raises(PermanentError, match="force_conflicts: true"):
        engine(rb, tmp_path / "state").run()


def test_storage_check_fails_with_a_clear_message(kubeapi: Any, tmp_path: Path) -> None:
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, phase_files=[],
                      extra_phases={1: [{"id": "sc", "uses": "kube.storage-check", "with": {"storage_class": "fast-ssd"}}]})
    with pytest.raises(PermanentError, match=r"StorageClass 'fast-ssd' does not exist .*available: standard.*storage_class"):
        engine(rb, tmp_path / "state").run()


def test_secret_values_never_reach_state_or_journal(kubeapi: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrator.sandbox.kubeapi.resources import BY_KEY

    monkeypatch.setenv("RG_DB_PASSWORD", "s3cret-pass-word")
    kubeapi.api.create(BY_KEY["/namespaces"], "", {"metadata": {"name": "rentguy"}})
    old = base64.b64encode(b"old-pass-word").decode()
    kubeapi.api.create(BY_KEY["/secrets"], "rentguy", {"metadata": {"name": "rentguy-db-credentials"},
                                                       "data": {"password": old}}, manager="kubectl")
    step = {"id": "db-secret", "uses": "kube.secret", "with": {
        "namespace": "rentguy", "name": "rentguy-db-credentials",
        "data": {"password": {"secret": "rg_db_password"}}, "force_conflicts": True}}
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, phase_files=[], extra_phases={1: [step]},
                      secrets={"rg_db_password": {"env": "RG_DB_PASSWORD"}})
    eng = engine(rb, tmp_path / "state")
    eng.run()
    live = kubeapi.store.get("/secrets", "rentguy", "rentguy-db-credentials")
    assert base64.b64decode(live["data"]["password"]) == b"s3cret-pass-word"
    for f in (tmp_path / "state").iterdir():
        if f.is_file():
            text = f.read_text()
            assert "s3cret-pass-word" not in text and base64.b64encode(b"s3cret-pass-word").decode() not in text
            assert old not in text and "old-pass-word" not in text
    facts = json.loads((tmp_path / "state" / "kube-test.state.json").read_text())["steps"]["db-secret"]["facts"]
    assert facts["existed"] is True and facts["digest"].startswith("sha256:")
    backup = Path(facts["backup"])
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    # again: the digest matches, nothing is written
    rv = live["metadata"]["resourceVersion"]
    again = engine(rb, tmp_path / "state-2")
    again.run()
    assert any("already in place" in line for line in again.said)
    assert kubeapi.store.get("/secrets", "rentguy", "rentguy-db-credentials")["metadata"]["resourceVersion"] == rv
    # rollback puts the previous value back, from the backup file
    engine(rb, tmp_path / "state").rollback(step_id="db-secret")
    assert kubeapi.store.get("/secrets", "rentguy", "rentguy-db-credentials")["data"] == {"password": old}
