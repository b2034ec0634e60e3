"""Retries, gates, approvals, changed runbooks, stamp."""

from __future__ import annotations

from pathlib import Path

from tests.util import migrate, status_json, write_runbook


def one_step(tmp_path: Path, **extra: object) -> Path:
    step = {"id": "touch", "uses": "shell.run",
            "with": {"command": "echo x >> effects; touch done", "creates": "done"}, **extra}
    return write_runbook(tmp_path, {1: [step]})


def args(runbook: Path) -> list[str]:
    return ["-r", str(runbook), "--state-dir", str(runbook.parent / "st")]


def test_temporary_errors_are_retried_then_succeed(tmp_path: Path) -> None:
    runbook = one_step(tmp_path, retries=3)
    proc = migrate("run", *args(runbook), env={"MIGRATE_FAILPOINTS": "touch:before-apply=temp-error*2"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("retrying apply of touch") == 2
    assert status_json(runbook, tmp_path / "st")["steps"][0]["attempts"] == 3


def test_retries_exhausted_fail_the_step(tmp_path: Path) -> None:
    runbook = one_step(tmp_path, retries=1)
    proc = migrate("run", *args(runbook), env={"MIGRATE_FAILPOINTS": "touch:before-apply=temp-error*5"})
    assert proc.returncode == 1
    assert "FAILED: touch: apply failed after 2 tries" in proc.stderr
    assert status_json(runbook, tmp_path / "st")["steps"][0]["status"] == "failed"


def test_permanent_error_stops_the_run_with_one_line(tmp_path: Path) -> None:
    runbook = one_step(tmp_path)
    proc = migrate("run", *args(runbook), env={"MIGRATE_FAILPOINTS": "touch:after-apply=error"})
    assert proc.returncode == 1 and proc.stderr.strip() == "FAILED: failpoint touch:after-apply (error)"
    # resume: the effect is already there (check), so it is not applied twice.
    assert migrate("resume", *args(runbook)).returncode == 0
    assert (tmp_path / "effects").read_text() == "x\n"


def test_gate_times_out_with_the_reason(tmp_path: Path) -> None:
    runbook = write_runbook(tmp_path, {1: [{"id": "gated", "uses": "shell.run", "gate": {"timeout": 0.5, "interval": 0.1},
                                            "with": {"command": "true", "verify": "test -e never"}}]})
    proc = migrate("run", *args(runbook))
    assert proc.returncode == 1
    assert "gated: gate failed after 0.5s: verify command exited 1" in proc.stderr


def test_gate_tcp_check(tmp_path: Path) -> None:
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    runbook = write_runbook(tmp_path, {1: [{"id": "port-open", "uses": "check.tcp", "with": {"host": "127.0.0.1", "port": port}}]})
    assert migrate("run", *args(runbook)).returncode == 0
    srv.close()
    runbook2 = write_runbook(tmp_path / "b", {1: [{"id": "port-open", "uses": "check.tcp", "gate": {"timeout": 0.3, "interval": 0.1},
                                                   "with": {"host": "127.0.0.1", "port": port}}]})
    proc = migrate("run", *args(runbook2))
    assert proc.returncode == 1 and f"tcp 127.0.0.1:{port}" in proc.stderr


def test_approval_refuses_when_not_interactive_and_not_approved(tmp_path: Path) -> None:
    runbook = write_runbook(tmp_path, {1: [{"id": "go-ahead", "uses": "approval", "with": {"prompt": "Flip DNS?"}}]})
    proc = migrate("run", *args(runbook))
    assert proc.returncode == 1 and "not approved" in proc.stderr and "--approve go-ahead" in proc.stderr
    # --yes confirms a production runbook; it does not answer an approval gate
    assert migrate("run", "--yes", *args(runbook)).returncode == 1
    assert migrate("run", *args(runbook), env={"MIGRATE_APPROVE": "go-ahead"}).returncode == 1  # no env answer
    assert migrate("run", "--approve", "go-ahead", *args(runbook)).returncode == 0


def test_approve_must_name_an_approval_step(tmp_path: Path) -> None:
    runbook = write_runbook(tmp_path, {1: [{"id": "go-ahead", "uses": "approval", "with": {"prompt": "Go?"}},
                                           {"id": "work", "uses": "shell.run", "with": {"command": "true"}}]})
    for name, expected in (("nope", "no step 'nope'"), ("work", "'work' is a shell.run step, not an approval gate")):
        proc = migrate("run", "--approve", name, *args(runbook))
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
        assert "▶" not in proc.stdout


def test_changed_completed_step_is_refused_without_accept_changes(tmp_path: Path) -> None:
    runbook = one_step(tmp_path)
    assert migrate("run", *args(runbook)).returncode == 0
    text = (tmp_path / "phase1.yaml").read_text().replace("echo x", "echo y")
    (tmp_path / "phase1.yaml").write_text(text)
    refused = migrate("run", *args(runbook))
    assert refused.returncode == 2 and "completed step(s) touch changed" in refused.stderr
    accepted = migrate("run", "--accept-changes", *args(runbook))
    assert accepted.returncode == 0, accepted.stderr
    assert "already in place" in accepted.stdout  # re-checked, not re-applied: `creates` exists


def test_stamp_marks_by_hand_and_is_journaled(tmp_path: Path) -> None:
    runbook = one_step(tmp_path)
    assert migrate("stamp", "--step", "touch", "--status", "skipped", *args(runbook)).returncode == 0
    assert migrate("run", *args(runbook)).returncode == 0
    assert not (tmp_path / "done").exists()  # skipped steps do not run
    journal = (tmp_path / "st" / "test.journal.jsonl").read_text()
    assert '"event": "stamped"' in journal and '"new": "skipped"' in journal
    bad = migrate("stamp", "--step", "touch", "--status", "done", *args(runbook))
    assert bad.returncode == 2 and "expected one of" in bad.stderr


def test_unknown_step_and_phase_arguments(tmp_path: Path) -> None:
    runbook = one_step(tmp_path)
    proc = migrate("run", "--step", "tuoch", *args(runbook))
    assert proc.returncode == 2 and "did you mean 'touch'" in proc.stderr
    proc = migrate("run", "--phase", "7", *args(runbook))
    assert proc.returncode == 2 and "--phase 7: no such phase" in proc.stderr
