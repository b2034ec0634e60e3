"""Crash at every failpoint of every step, resume, and converge to the uninterrupted run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from migrator.engine.failpoints import STANDARD
from tests.util import migrate, status_json

STEPS = ["make-workdir", "write-config", "approve-build", "build", "build-report", "publish", "announce"]


def snapshot(work: Path) -> dict[str, bytes]:
    return {str(p.relative_to(work)): p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    from tests.util import REPO

    dest = tmp_path_factory.mktemp("ref") / "example"
    shutil.copytree(REPO / "runbooks" / "examples", dest)
    proc = migrate("run", "--approve", "approve-build", "-r", str(dest / "local.yaml"), "--state-dir", str(dest / "st"),
                   env={"EXAMPLE_API_TOKEN": "canary-Zq8v1-not-for-logs"})
    assert proc.returncode == 0, proc.stderr
    return snapshot(dest / "work")


@pytest.mark.parametrize("when", STANDARD)
@pytest.mark.parametrize("step", STEPS)
def test_crash_then_resume_converges(example: Path, env: dict[str, str], reference: dict[str, bytes],
                                     step: str, when: str) -> None:
    state = example.parent / "st"
    args = ["-r", str(example), "--state-dir", str(state)]
    crashed = migrate("run", "--approve", "approve-build", *args, env={**env, "MIGRATE_FAILPOINTS": f"{step}:{when}=crash"})
    assert crashed.returncode == -9, crashed.stderr  # SIGKILL: no cleanup ran, like a power cut
    before = status_json(example, state, env)
    assert {s["id"]: s["status"] for s in before["steps"]}[step] == "running"

    resumed = migrate("resume", "--approve", "approve-build", *args, env=env)
    assert resumed.returncode == 0, resumed.stderr
    after = status_json(example, state, env)
    assert all(s["status"] == "succeeded" for s in after["steps"]), after
    assert snapshot(example.parent / "work") == reference
    effects = (example.parent / "work" / "effects.log").read_text().split()
    assert sorted(effects) == ["build", "make-workdir", "publish"]  # each side effect exactly once
