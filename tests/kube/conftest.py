"""Fixtures: the Kubernetes API stand-in (in-process) and runbooks pointing at it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.util import REPO


@pytest.fixture
def kubeapi(tmp_path: Path) -> Iterator[Any]:
    from migrator.sandbox.kubeapi import start_server

    handle = start_server(ready_delay=0.1, kubeconfig_file=tmp_path / "kubeconfig")
    try:
        yield handle
    finally:
        handle.stop()


def kube_runbook(directory: Path, kubeconfig: Path, phase_files: list[str] | None = None,
                 extra_phases: dict[int, list[dict[str, Any]]] | None = None,
                 vars: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None) -> Path:
    """A runbook whose environment.target points at the stand-in; phase 1 is the repo's own file."""
    directory.mkdir(parents=True, exist_ok=True)
    phases = []
    for rel in phase_files if phase_files is not None else ["phases/1-cluster-setup.yaml"]:
        dst = directory / Path(rel).name
        shutil.copy(REPO / rel, dst)
        phases.append(dst.name)
    for number, steps in sorted((extra_phases or {}).items()):
        pf = directory / f"extra{number}.yaml"
        pf.write_text(yaml.safe_dump({"phase": number, "name": f"extra-{number}", "steps": steps}, sort_keys=False))
        phases.append(pf.name)
    doc: dict[str, Any] = {
        "name": "kube-test", "phases": phases, "vars": vars or {"domain": "test.example"},
        "environment": {"target": {"kubeconfig": str(kubeconfig), "ingress_address": "127.0.0.1",
                                   "storage_class": "standard"}},
    }
    if secrets:
        doc["secrets"] = secrets
    path = directory / "runbook.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
