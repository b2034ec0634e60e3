"""One migrate at a time; stale locks recovered; a damaged state file reported and left as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.util import REPO, migrate, status_json, write_runbook


def slow_runbook(tmp_path: Path, seconds: float = 30) -> Path:
    return write_runbook(tmp_path, {1: [
        {"id": "slow", "uses": "shell.run", "with": {"command": f"sleep {seconds}; touch done", "creates": "done"}},
        {"id": "after", "uses": "shell.run", "needs": ["slow"], "with": {"command": "touch after", "creates": "after"}},
    ]})


def start_run(runbook: Path, state: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "migrator", "run", "-r", str(runbook), "--state-dir", str(state)],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lock = state / "test.lock"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip():
            st = state / "test.state.json"
            if st.exists() and json.loads(st.read_text())["steps"].get("slow", {}).get("status") == "running":
                return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the first run never took the lock")


def test_second_concurrent_run_exits_3_naming_the_holder(tmp_path: Path) -> None:
    runbook = slow_runbook(tmp_path)
    state = tmp_path / "st"
    first = start_run(runbook, state)
    try:
        second = migrate("run", "-r", str(runbook), "--state-dir", str(state))
        assert second.returncode == 3
        assert f"locked by pid {first.pid}" in second.stderr
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()


def test_ctrl_c_records_interrupted_releases_lock_and_resume_finishes(tmp_path: Path) -> None:
    runbook = slow_runbook(tmp_path, seconds=2)
    state = tmp_path / "st"
    first = start_run(runbook, state)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=20)
    assert first.returncode == 130, err
    steps = {s["id"]: s for s in status_json(runbook, state)["steps"]}
    assert steps["slow"]["status"] == "interrupted"
    assert (state / "test.lock").read_text() == ""  # released
    resumed = migrate("resume", "-r", str(runbook), "--state-dir", str(state))
    assert resumed.returncode == 0, resumed.stderr
    assert {s["status"] for s in status_json(runbook, state)["steps"]} == {"succeeded"}


def test_stale_lock_of_a_dead_process_is_taken_over_and_journaled(tmp_path: Path) -> None:
    runbook = slow_runbook(tmp_path, seconds=0)
    state = tmp_path / "st"
    state.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (state / "test.lock").write_text(json.dumps({"pid": dead.pid, "host": "h", "started": "x", "command": "run"}))
    proc = migrate("run", "-r", str(runbook), "--state-dir", str(state))
    assert proc.returncode == 0, proc.stderr
    assert "stale lock" in proc.stdout
    events = [json.loads(line) for line in (state / "test.journal.jsonl").read_text().splitlines()]
    recovered = [e for e in events if e["event"] == "stale-lock-recovered"]
    assert recovered and recovered[0]["previous"]["pid"] == dead.pid


def test_unlock_refuses_a_live_holder_and_removes_a_stale_file(tmp_path: Path) -> None:
    runbook = slow_runbook(tmp_path)
    state = tmp_path / "st"
    first = start_run(runbook, state)
    try:
        refused = migrate("unlock", "-r", str(runbook), "--state-dir", str(state))
        assert refused.returncode == 1 and "held by a running process" in refused.stderr
    finally:
        first.kill()
        first.wait()
    freed = migrate("unlock", "-r", str(runbook), "--state-dir", str(state))
    assert freed.returncode == 0 and "removed" in freed.stdout
    assert not (state / "test.lock").exists()


def _ran_once(tmp_path: Path) -> tuple[Path, Path, Path]:
    runbook = slow_runbook(tmp_path, seconds=0)
    state = tmp_path / "st"
    assert migrate("run", "-r", str(runbook), "--state-dir", str(state)).returncode == 0
    return runbook, state, state / "test.state.json"


def test_corrupted_state_file_is_reported_and_left_untouched(tmp_path: Path) -> None:
    runbook, state, path = _ran_once(tmp_path)
    path.write_bytes(b"{\"version\": 1, \"steps\": \x00\xff garbage")
    damaged = path.read_bytes()
    for verb in (["run"], ["status"], ["resume"]):
        proc = migrate(*verb, "-r", str(runbook), "--state-dir", str(state))
        assert proc.returncode == 2, proc.stderr
        assert f"{path}: state file is corrupted" in proc.stderr and "left untouched" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert path.read_bytes() == damaged


def test_truncated_state_file_is_reported_and_left_untouched(tmp_path: Path) -> None:
    runbook, state, path = _ran_once(tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    proc = migrate("run", "-r", str(runbook), "--state-dir", str(state))
    assert proc.returncode == 2
    assert "state file is truncated" in proc.stderr
    assert path.read_bytes() == whole[: len(whole) // 2]


def test_state_is_written_atomically_with_private_mode(tmp_path: Path) -> None:
    _, state, path = _ran_once(tmp_path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert not list(state.glob(".*.tmp"))  # no temp file left behind
    assert json.loads(path.read_text())["steps"]["after"]["status"] == "succeeded"


def test_a_status_probe_at_the_instant_a_run_starts_does_not_lock_it_out(tmp_path: Path) -> None:
    """`status` and every refresh of `serve` probe with a shared flock for an instant: a run starting then
    waits it out, while a real holder (its socket name bound) is still refused at once."""
    import fcntl
    import threading

    from migrator.errors import LockedError
    from migrator.store.lock import RunLock

    path = tmp_path / "x.lock"
    path.write_text("")
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    threading.Timer(0.15, lambda: (fcntl.flock(fd, fcntl.LOCK_UN), os.close(fd))).start()
    lock = RunLock(path)
    lock.acquire("run")  # the probe ends within its wait
    try:
        other = RunLock(path)
        started = time.monotonic()
        try:
            other.acquire("run")
            raise AssertionError("a second run took a held lock")
        except LockedError:
            assert time.monotonic() - started < 0.4  # the holder's socket says so at once
        assert other.is_held()
    finally:
        lock.release()
