"""backup.create with backend: velero, against the Kubernetes API stand-in, a test thread playing Velero's
backup controller (it writes .status as Velero does). What this does not prove: that a real Velero backs
the namespaces up, nor that its data restores (the files backend's drill, test_drill.py, does that)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import PermanentError
from tests.kube.conftest import kube_runbook
from tests.kubeapi.conftest import http
from tests.util import engine

GROUP = "/apis/velero.io/v1/namespaces/velero"


def _crd(kind: str, plural: str) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.velero.io"},
            "spec": {"group": "velero.io", "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


def install_velero(kubeapi: Any) -> None:
    for kind, plural in (("Backup", "backups"), ("DeleteBackupRequest", "deletebackuprequests")):
        code, body = http("POST", f"{kubeapi.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                          _crd(kind, plural))
        assert code == 201, body
    code, body = http("POST", f"{kubeapi.url}/api/v1/namespaces", {"metadata": {"name": "velero"}})
    assert code == 201, body


def runbook(tmp_path: Path, kubeapi: Any) -> Path:
    return kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, phase_files=[], extra_phases={5: [
        {"id": "backup", "uses": "backup.create", "retries": 0, "gate": {"timeout": 10, "interval": 0.2},
         "with": {"backend": "velero", "velero": {"included_namespaces": ["rentguy", "psra"]}}}]})


class FakeVelero:
    """Velero's backup controller: InProgress with progress, then `final` after `after` seconds. Bounded."""

    def __init__(self, kubeapi: Any, final: Callable[[dict[str, Any]], dict[str, Any]], after: float = 0.6) -> None:
        self.url, self.final, self.after = kubeapi.url, final, after
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 20
        while not self.stop.is_set() and time.monotonic() < deadline:
            code, body = http("GET", f"{self.url}{GROUP}/backups")
            for b in (body.get("items") or []) if code == 200 else []:
                name = b["metadata"]["name"]
                age = time.monotonic() - self.seen.setdefault(name, time.monotonic())
                status = (self.final(b) if age >= self.after
                          else {"phase": "InProgress", "progress": {"totalItems": 40, "itemsBackedUp": int(age * 50)}})
                if status != b.get("status"):
                    http("PATCH", f"{self.url}{GROUP}/backups/{name}/status", {"status": status},
                         "application/merge-patch+json")
            self.stop.wait(0.05)

    def __enter__(self) -> FakeVelero:
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def completed(_b: dict[str, Any]) -> dict[str, Any]:
    return {"phase": "Completed", "progress": {"totalItems": 40, "itemsBackedUp": 40}}


def test_without_velero_the_step_fails_with_the_reason(kubeapi: Any, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="Velero is not installed on .*backups.velero.io does not exist"):
        engine(runbook(tmp_path, kubeapi), tmp_path / "state").run()


def test_it_creates_a_backup_and_waits_for_completed_then_rollback_asks_velero(kubeapi: Any, tmp_path: Path) -> None:
    install_velero(kubeapi)
    rb = runbook(tmp_path, kubeapi)
    eng = engine(rb, tmp_path / "state")
    with FakeVelero(kubeapi, completed):
        eng.run()
    rec = eng.state.steps["backup"]
    assert rec.status == "succeeded" and rec.report["items"] == 40
    code, body = http("GET", f"{kubeapi.url}{GROUP}/backups")
    (backup,) = body["items"]
    assert backup["spec"]["includedNamespaces"] == ["rentguy", "psra"] and backup["status"]["phase"] == "Completed"
    assert backup["metadata"]["name"] == rec.facts["velero_backup"]
    # Done: a second run creates nothing.
    engine(rb, tmp_path / "state").run()
    assert len(http("GET", f"{kubeapi.url}{GROUP}/backups")[1]["items"]) == 1
    engine(rb, tmp_path / "state").rollback(step_id="backup")
    (req,) = http("GET", f"{kubeapi.url}{GROUP}/deletebackuprequests")[1]["items"]
    assert req["spec"]["backupName"] == backup["metadata"]["name"]


def test_a_failed_backup_fails_the_step_with_velero_reasons(kubeapi: Any, tmp_path: Path) -> None:
    install_velero(kubeapi)

    def failed(_b: dict[str, Any]) -> dict[str, Any]:
        return {"phase": "FailedValidation", "validationErrors": ["backup storage location 'default' not found"]}

    with FakeVelero(kubeapi, failed), pytest.raises(PermanentError, match="FailedValidation: backup storage location"):
        engine(runbook(tmp_path, kubeapi), tmp_path / "state").run()
