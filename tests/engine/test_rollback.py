"""Rollback of a step, of a phase, with --cascade, the refusal without it, and dry runs."""

from __future__ import annotations

from pathlib import Path

from tests.engine.conftest import CANARY
from tests.util import migrate, status_json

ENV = {"EXAMPLE_API_TOKEN": CANARY}


def ran(example: Path) -> list[str]:
    args = ["-r", str(example), "--state-dir", str(example.parent / "st")]
    assert migrate("run", "--approve", "approve-build", *args, env=ENV).returncode == 0
    return args


def statuses(example: Path) -> dict[str, str]:
    return {s["id"]: s["status"] for s in status_json(example, example.parent / "st", ENV)["steps"]}


def test_rollback_of_a_step_with_dependents_is_refused_naming_them(example: Path) -> None:
    args = ran(example)
    proc = migrate("rollback", "--step", "build", *args, env=ENV)
    assert proc.returncode == 1
    assert "still applied and depending on it: build-report, publish, announce" in proc.stderr
    assert (example.parent / "work" / "build.out").exists()  # nothing undone
    assert set(statuses(example).values()) == {"succeeded"}


def test_rollback_of_a_leaf_step(example: Path) -> None:
    args = ran(example)
    proc = migrate("rollback", "--step", "announce", *args, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert not (example.parent / "work" / "site" / "index.txt").exists()
    assert statuses(example)["announce"] == "rolled_back"
    # Run again: only the rolled-back step runs.
    again = migrate("run", "--approve", "approve-build", *args, env=ENV)
    assert again.returncode == 0 and again.stdout.count("▶") == 1


def test_rollback_with_cascade_undoes_dependents_in_reverse_order(example: Path) -> None:
    args = ran(example)
    proc = migrate("rollback", "--step", "build", "--cascade", *args, env=ENV)
    assert proc.returncode == 0, proc.stderr
    order = [line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("↶")]
    assert order == ["announce", "publish", "build-report", "build"]
    work = example.parent / "work"
    assert not (work / "build.out").exists() and not (work / "site").exists() and not (work / "report.txt").exists()
    st = statuses(example)
    assert [st[s] for s in ("make-workdir", "write-config", "approve-build")] == ["succeeded"] * 3


def test_rollback_of_a_phase_and_its_refusal(example: Path) -> None:
    args = ran(example)
    refused = migrate("rollback", "--phase", "2", *args, env=ENV)
    assert refused.returncode == 1 and "publish, announce" in refused.stderr
    ok = migrate("rollback", "--phase", "3", *args, env=ENV)
    assert ok.returncode == 0, ok.stderr
    ok2 = migrate("rollback", "--phase", "2", *args, env=ENV)
    assert ok2.returncode == 0, ok2.stderr
    st = statuses(example)
    assert {st[s] for s in ("build", "build-report", "publish", "announce")} == {"rolled_back"}
    # The file.write of phase 2 restored what was there before: nothing.
    assert not (example.parent / "work" / "report.txt").exists()


def test_file_write_rollback_restores_previous_content(example: Path) -> None:
    work = example.parent / "work"
    work.mkdir()
    (work / "app.conf").write_text("operator's own config\n")
    args = ran(example)
    assert "greeting" in (work / "app.conf").read_text()
    assert migrate("rollback", "--phase", "1", "--cascade", *args, env=ENV).returncode == 0
    assert (work / "app.conf").read_text() == "operator's own config\n"


def test_dry_runs_change_nothing(example: Path) -> None:
    args = ["-r", str(example), "--state-dir", str(example.parent / "st")]
    for verb in (["plan"], ["run", "--dry-run"]):
        proc = migrate(*verb, *args, env=ENV)
        assert proc.returncode == 0, proc.stderr
        assert "+ [1] make-workdir" in proc.stdout
    assert not (example.parent / "work").exists()
    assert not (example.parent / "st" / "example-local.state.json").exists()
    ran(example)
    before = (example.parent / "st" / "example-local.state.json").read_bytes()
    dry = migrate("rollback", "--phase", "3", "--dry-run", *args, env=ENV)
    assert dry.returncode == 0 and "rollback" in dry.stdout
    assert (example.parent / "work" / "site" / "index.txt").exists()
    assert (example.parent / "st" / "example-local.state.json").read_bytes() == before
