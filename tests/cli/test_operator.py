"""The operator's options, from a real subprocess: global options after the verb with their choices
checked, --version, shell completion, failpoints refused on production, --yes versus --approve."""

from __future__ import annotations

import os
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from migrator.cli.main import hoist_global_options
from tests.util import MIGRATE, REPO, migrate, write_runbook


def _failing(tmp_path: Path) -> list[str]:
    rb = write_runbook(tmp_path, {1: [{"id": "w", "uses": "shell.run", "with": {"command": "exit 3"}}]})
    return ["-r", str(rb), "--state-dir", str(tmp_path / "st")]


def test_global_options_after_the_verb(tmp_path: Path) -> None:
    args = _failing(tmp_path)
    before = migrate("--traceback", "run", *args)
    after = migrate("run", *args, "--traceback", "--log-level", "debug", "--log-format=json")
    for proc in (before, after):
        assert proc.returncode == 1
        assert "Traceback (most recent call last)" in proc.stderr and "command exited 3" in proc.stderr
    plain = migrate("run", *args)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr


@pytest.mark.parametrize("argv, option", [
    (["run", "--log-level", "loud"], "--log-level"),
    (["--log-format", "yaml", "status"], "--log-format"),
    (["status", "--log-format=xml"], "--log-format"),
])
def test_a_wrong_choice_is_bad_input(tmp_path: Path, argv: list[str], option: str) -> None:
    proc = migrate(*argv, "--state-dir", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert f"Invalid value for '{option}'" in proc.stderr and "Traceback" not in proc.stderr


def test_hoisting_leaves_everything_else_alone() -> None:
    assert hoist_global_options(["sandbox", "up", "--log-level", "debug", "--scale", "2"]) == \
        ["--log-level", "debug", "sandbox", "up", "--scale", "2"]
    assert hoist_global_options(["--traceback", "run", "--step", "a", "--", "--traceback"]) == \
        ["--traceback", "run", "--step", "a", "--", "--traceback"]
    assert hoist_global_options(["--log-format", "json", "status", "--json"]) == ["--log-format", "json", "status", "--json"]
    assert hoist_global_options(["--help"]) == ["--help"]


def test_version(tmp_path: Path) -> None:
    proc = migrate("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"migrate {version('sevensa-migrator')}"


def test_shell_completion(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "_MIGRATE_COMPLETE": "complete_bash",
           "COMP_WORDS": "migrate ro", "COMP_CWORD": "1"}
    proc = subprocess.run(MIGRATE, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.split() == ["rollback"], proc.stderr
    shown = migrate("--show-completion", "bash", cwd=tmp_path)
    assert shown.returncode == 0 and "_MIGRATE_COMPLETE=complete_bash" in shown.stdout


def _production(tmp_path: Path) -> Path:
    rb = write_runbook(tmp_path, {1: [
        {"id": "go-no-go", "uses": "approval", "with": {"prompt": "Cut over?"}},
        {"id": "work", "uses": "file.write", "needs": ["go-no-go"], "with": {"path": "out.txt", "content": "x"}}]},
        name="prod")
    doc = yaml.safe_load(rb.read_text())
    rb.write_text(yaml.safe_dump({**doc, "production": True}, sort_keys=False))
    return rb


def test_failpoints_are_refused_on_production(tmp_path: Path) -> None:
    rb = _production(tmp_path)
    args = ["-r", str(rb), "--state-dir", str(tmp_path / "st"), "--yes", "--approve", "go-no-go"]
    for verb in ("run", "resume"):
        proc = migrate(verb, *args, env={"MIGRATE_FAILPOINTS": "work:before-apply=crash"})
        assert proc.returncode == 2, proc.stderr
        assert "production runbook 'prod': MIGRATE_FAILPOINTS is set" in proc.stderr
    assert not (tmp_path / "st").exists() and not (tmp_path / "out.txt").exists()
    assert migrate("run", *args).returncode == 0  # the same without failpoints
    assert (tmp_path / "out.txt").read_text() == "x"


def test_yes_confirms_production_but_answers_no_gate(tmp_path: Path) -> None:
    rb = _production(tmp_path)
    base = ["-r", str(rb), "--state-dir", str(tmp_path / "st")]
    unconfirmed = migrate("run", *base, "--approve", "go-no-go")
    assert unconfirmed.returncode == 1 and "pass --yes" in unconfirmed.stderr
    gate = migrate("run", *base, "--yes")
    assert gate.returncode == 1 and "go-no-go: not approved" in gate.stderr and "--approve go-no-go" in gate.stderr
    assert not (tmp_path / "out.txt").exists()
    done = migrate("resume", *base, "--yes", "--approve", "go-no-go")
    assert done.returncode == 0, done.stderr


def test_status_watch_shows_the_running_step_and_the_journal(tmp_path: Path) -> None:
    import time

    # slow-copy runs until the test has watched it (a file the test creates; bounded at 60 s), not for a
    # fixed time: under load, `migrate status --watch` can take longer to start than any sleep.
    release = tmp_path / "release"
    wait = f"i=0; while [ ! -e '{release}' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"
    rb = write_runbook(tmp_path, {1: [{"id": "first", "uses": "shell.run", "with": {"command": "true"}},
                                      {"id": "slow-copy", "uses": "shell.run", "needs": ["first"],
                                       "with": {"command": wait}}]})
    args = ["-r", str(rb), "--state-dir", str(tmp_path / "st")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.Popen([*MIGRATE, "run", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            journal = tmp_path / "st" / "test.journal.jsonl"
            if journal.exists() and '"step": "slow-copy"' in journal.read_text():
                break
            time.sleep(0.1)
        watched = migrate("status", *args, "--watch", "--count", "2", "--interval", "0.5")
    finally:
        release.touch()
        assert run.wait(60) == 0
    assert watched.returncode == 0, watched.stderr
    frames = watched.stdout.split("journal:")
    assert len(frames) == 3  # two frames
    assert "1/2 steps done" in watched.stdout
    assert "running: [1] slow-copy (shell.run) for " in watched.stdout
    tail = watched.stdout.split("journal:")[-1].splitlines()
    assert any(" step-started " in x and x.endswith("step=slow-copy") for x in tail), tail
    assert any(" gate-passed " in x and "step=first" in x for x in tail), tail
    refused = migrate("status", *args, "--watch", "--json")
    assert refused.returncode == 2
