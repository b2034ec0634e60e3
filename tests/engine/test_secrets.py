"""A canary secret from an env var never reaches the state, the journal, the logs or the output."""

from __future__ import annotations

from pathlib import Path

from tests.util import migrate, write_runbook

CANARY = "canary-7f3a9c-secret-value"


def leaky_runbook(tmp_path: Path, fail: bool) -> Path:
    # The command itself prints the secret (as a careless script would) and, when `fail`, dies.
    command = 'echo "token is $TOKEN"; echo "stderr $TOKEN" >&2' + ("; exit 3" if fail else "")
    return write_runbook(tmp_path, {1: [
        {"id": "use-token", "uses": "shell.run",
         "with": {"command": command, "env": {"TOKEN": "${secrets.token}"}, "verify": "test -n \"$TOKEN\""}},
        {"id": "write-it", "uses": "file.write", "needs": ["use-token"],
         "with": {"path": "out.txt", "content": "value: ${secrets.token}\n"}},
    ]}, secrets={"token": {"env": "CANARY_TOKEN"}})


def everything_written(tmp_path: Path) -> str:
    state = tmp_path / "st"
    return "".join(p.read_text(errors="replace") for p in state.rglob("*") if p.is_file())


def test_canary_absent_on_success_with_json_logs(tmp_path: Path) -> None:
    runbook = leaky_runbook(tmp_path, fail=False)
    proc = migrate("--log-format", "json", "--log-level", "debug", "run", "-r", str(runbook),
                   "--state-dir", str(tmp_path / "st"), env={"CANARY_TOKEN": CANARY})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.txt").read_text() == f"value: {CANARY}\n"  # the step did receive it
    for text in (proc.stdout, proc.stderr, everything_written(tmp_path)):
        assert CANARY not in text
    status = migrate("status", "--json", "-r", str(runbook), "--state-dir", str(tmp_path / "st"),
                     env={"CANARY_TOKEN": CANARY})
    assert CANARY not in status.stdout


def test_canary_absent_when_the_step_fails_with_it_in_its_error(tmp_path: Path) -> None:
    runbook = leaky_runbook(tmp_path, fail=True)
    proc = migrate("--traceback", "run", "-r", str(runbook), "--state-dir", str(tmp_path / "st"),
                   env={"CANARY_TOKEN": CANARY})
    assert proc.returncode == 1
    assert "FAILED: command exited 3: stderr ***" in proc.stderr  # the message is kept, the value masked
    for text in (proc.stdout, proc.stderr, everything_written(tmp_path)):
        assert CANARY not in text


def test_canary_absent_from_the_plan(tmp_path: Path) -> None:
    runbook = leaky_runbook(tmp_path, fail=False)
    proc = migrate("plan", "-r", str(runbook), "--state-dir", str(tmp_path / "st"), env={"CANARY_TOKEN": CANARY})
    assert proc.returncode == 0, proc.stderr
    assert CANARY not in proc.stdout + proc.stderr
    assert not (tmp_path / "out.txt").exists()
