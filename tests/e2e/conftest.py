"""The end-to-end suite: one full rehearsal on the session's sandbox, then drills against it.

The module leaves the sandbox as it found it: its last act is `migrate rollback --all`, which must put
every part back (the sandbox tests that run later check a pristine platform).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.live_view import LiveView
from tests.util import REPO, migrate

RUNBOOK = REPO / "runbooks" / "sandbox.yaml"


@dataclass
class Rehearsal:
    state_dir: Path
    report: dict[str, Any]
    reference: dict[str, Any]  # the platform after the uninterrupted rehearsal
    before: dict[str, Any]  # the platform before it
    # backup.json of each backup the rehearsal made, read at once (a chaos run rolls phase 5 back; the
    # backup is kept, but the report's folder is the one the rehearsal made)
    backup_manifests: dict[str, dict[str, Any]]
    live_view: LiveView  # `migrate serve` watched by Chromium while the rehearsal ran

    def args(self) -> list[str]:
        return ["--runbook", str(RUNBOOK), "--state-dir", str(self.state_dir)]

    def status(self) -> dict[str, str]:
        proc = migrate("status", "--json", *self.args())
        assert proc.returncode == 0, proc.stderr
        return {s["id"]: s["status"] for s in json.loads(proc.stdout)["steps"]}


# Package scope: torn down (rollback --all) as soon as the last e2e test ran, before the other suites that
# share the session's sandbox and expect it pristine.
@pytest.fixture(scope="package")
def rehearsed(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    from migrator.sandbox import snapshot

    state_dir = tmp_path_factory.mktemp("e2e-state")
    before = snapshot.take()
    live_view = LiveView(RUNBOOK, state_dir, tmp_path_factory.mktemp("e2e-live-view"))
    live_view.start()
    try:
        proc = migrate("rehearse", "--runbook", str(RUNBOOK), "--state-dir", str(state_dir), timeout=1200)
    finally:
        live_view.stop()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((state_dir / "sandbox.report.json").read_text())
    manifests = {}
    for b in report.get("backups") or []:
        path = state_dir / "backups" / str(b.get("folder")) / "backup.json"
        if path.is_file():
            manifests[str(b.get("folder"))] = json.loads(path.read_text())
    rehearsal = Rehearsal(state_dir, report, snapshot.take(), before, manifests, live_view)
    yield rehearsal
    undo = migrate("rollback", "--all", *rehearsal.args(), timeout=900)
    assert undo.returncode == 0, undo.stdout[-3000:] + undo.stderr[-3000:]
    after = snapshot.take()
    assert snapshot.differences(before, after) == [], "rollback --all did not restore the sandbox"
