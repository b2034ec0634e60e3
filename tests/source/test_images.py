"""images.resolve against the private VPS: the images come from its containers, `migrate plan` lists
them, and a downgrade without the runbook's consent fails the gate (and the plan) with one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.util import migrate

from .conftest import CANARY, VPS
from .test_steps import runbook


def _images_runbook(tmp: Path, vps: VPS, images: dict[str, Any]) -> Path:
    rb = runbook(tmp, vps, {1: [
        {"id": "inventory", "uses": "compose.inspect", "with": {"expect_services": ["web", "db"]}, "gate": {"timeout": 30}},
        {"id": "resolve-images", "uses": "images.resolve", "needs": ["inventory"], "retries": 0,
         "with": {"inventory_step": "inventory"}},
    ]})
    doc = yaml.safe_load(rb.read_text())
    doc["images"] = images
    rb.write_text(yaml.safe_dump(doc))
    return rb


def test_images_from_the_vps_and_a_downgrade_needs_consent(vps: VPS, tmp_path: Path) -> None:
    # The VPS's db runs mgtest/postgres-fake:15 (imported locally: no registry digest), web mgtest/busybox:1.
    downgrade = {"from_vps": {"rentguy-api": "web", "rentguy-db": "db"},
                 "override": {"rentguy-db": "mgtest/postgres-fake:14"}}
    rb = _images_runbook(tmp_path / "a", vps, downgrade)
    sd = tmp_path / "a" / "state"

    plan = migrate("plan", "--runbook", str(rb), "--state-dir", str(sd))
    assert plan.returncode == 4, plan.stdout + plan.stderr
    want = ('image rentguy-db: major downgrade 15 -> 14 (mgtest/postgres-fake:15 on the VPS, mgtest/postgres-fake:14 '
            'here) needs consent: add {key: rentguy-db, from: "15", to: "14", reason: ...} to the runbook\'s images.consent')
    assert want in plan.stdout + plan.stderr

    run = migrate("run", "--runbook", str(rb), "--state-dir", str(sd))
    assert run.returncode == 1, run.stdout + run.stderr
    assert want in run.stderr
    failed = [line for line in run.stderr.splitlines() if "needs consent" in line]
    assert failed and all("Traceback" not in line for line in run.stderr.splitlines())
    state = json.loads((sd / "test.state.json").read_text())
    assert state["steps"]["resolve-images"]["status"] == "failed"
    assert state["steps"]["resolve-images"]["facts"]["images"] == {}  # nothing for a manifest step to take
    assert CANARY not in plan.stdout + plan.stderr + run.stdout + run.stderr + (sd / "test.state.json").read_text()

    consented = {**downgrade, "consent": [{"key": "rentguy-db", "from": "15", "to": "14",
                                           "reason": "the fake's data directory is version-neutral"}]}
    rb = _images_runbook(tmp_path / "b", vps, consented)
    sd = tmp_path / "b" / "state"
    plan = migrate("plan", "--runbook", str(rb), "--state-dir", str(sd))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert ("image rentguy-api: mgtest/busybox:1 (vps service web, tag only: the VPS has no registry digest of it "
            "(built or loaded locally))") in plan.stdout
    assert ("image rentguy-db: mgtest/postgres-fake:14 (override); the VPS runs mgtest/postgres-fake:15; MAJOR DOWNGRADE, "
            "consented: the fake's data directory is version-neutral") in plan.stdout
    assert "image keycloak: quay.io/keycloak/keycloak:24.0 (default)" in plan.stdout

    run = migrate("run", "--runbook", str(rb), "--state-dir", str(sd))
    assert run.returncode == 0, run.stdout + run.stderr
    facts = json.loads((sd / "test.state.json").read_text())["steps"]["resolve-images"]["facts"]
    assert facts["images"]["rentguy-api"] == "mgtest/busybox:1"
    assert facts["images"]["rentguy-db"] == "mgtest/postgres-fake:14"
    assert facts["refusals"] == []
