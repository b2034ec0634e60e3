"""Probed as a crashing machine and a hostile user would (issue 20): nothing applied twice after kill -9,
a lock that cannot be split, a state that cannot be fooled, a journal that masks and does not tear, only
the named environment for commands."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from migrator import redact
from migrator.errors import PermanentError
from migrator.store import atomic
from migrator.store.journal import Journal
from migrator.store.procs import start_ticks
from tests.util import MIGRATE, REPO, migrate, status_json, write_runbook

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*MIGRATE, *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _state(state: Path) -> dict[str, Any]:
    try:
        return json.loads((state / "test.state.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, json.JSONDecodeError):
        return {"steps": {}}


def _events(state: Path) -> list[dict[str, Any]]:
    return Journal(state / "test.journal.jsonl").read()


# -- nothing applied twice -------------------------------------------------------------------------

def effect_runbook(tmp_path: Path, n: int = 3, seconds: float = 1.5) -> Path:
    """n steps; each appends its own line once to effects.log after `seconds` (the line is its marker)."""
    return write_runbook(tmp_path, {1: [
        {"id": f"e{i}", "uses": "shell.run", **({"needs": [f"e{i - 1}"]} if i else {}),
         "with": {"command": f"sleep {seconds}; echo effect-{i} >> effects.log", "unless": f"grep -qx effect-{i} effects.log"}}
        for i in range(n)]})


def test_kill_9_at_random_moments_then_resume_applies_every_effect_once(tmp_path: Path) -> None:
    """The drill: 10 SIGKILLs of `migrate` at random moments while its commands run, each followed by a
    resume; the commands' children die with it, so none runs beside its own resumed copy."""
    runbook = effect_runbook(tmp_path, n=4, seconds=1.5)
    state = tmp_path / "st"
    rnd = random.Random(20)
    args = ["-r", str(runbook), "--state-dir", str(state)]
    kills = 0
    while kills < 10:
        # `resume` once a run is recorded (a kill during start-up may come before that).
        verb = "resume" if _state(state).get("extra", {}).get("last_run") is not None else "run"
        proc = _popen(verb, *args)
        time.sleep(rnd.uniform(0.3, 2.5))
        if proc.poll() is not None:
            proc.communicate()
            if (tmp_path / "effects.log").exists() and len((tmp_path / "effects.log").read_text().split()) == 4:
                # All done before we could kill it: start over with fresh effects, to keep killing.
                (tmp_path / "effects.log").unlink()
                for f in state.glob("*"):
                    f.unlink()
            continue
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
        time.sleep(0.2)  # the parent-death signal reaches the wrapper, which stops its group
        lines = (tmp_path / "effects.log").read_text().split() if (tmp_path / "effects.log").exists() else []
        assert len(lines) == len(set(lines)), lines  # never twice, even before the resume
    final = migrate("resume" if _state(state).get("extra", {}).get("last_run") is not None else "run", *args)
    assert final.returncode == 0, final.stderr
    lines = (tmp_path / "effects.log").read_text().split()
    assert sorted(lines) == [f"effect-{i}" for i in range(4)], lines
    assert not _state(state)["steps"]["e3"]["processes"]


def test_a_child_is_recorded_before_it_runs_and_dies_with_migrate(tmp_path: Path) -> None:
    runbook = effect_runbook(tmp_path, n=1, seconds=30)
    state = tmp_path / "st"
    proc = _popen("run", "-r", str(runbook), "--state-dir", str(state))
    try:
        _wait_for(lambda: _state(state)["steps"].get("e0", {}).get("processes"))
        rec = _state(state)["steps"]["e0"]["processes"][0]
        assert rec["pgid"] == rec["pid"] and rec["start_ticks"] == start_ticks(rec["pid"])
        assert os.getpgid(rec["pid"]) == rec["pid"]  # its own process group
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    _wait_for(lambda: start_ticks(rec["pid"]) is None, timeout=10)  # killed with migrate, group and all
    leftovers = subprocess.run(["pgrep", "-g", str(rec["pgid"])], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


def _orphan_state(tmp_path: Path, timeout: float) -> tuple[Path, Path, subprocess.Popen[bytes]]:
    """A state as a dead run leaves it: step `e0` running, its recorded child still alive (started here,
    in its own group, without the parent-death signal: as where Linux's is missing). The child makes its
    effect once the file `release` exists."""
    runbook = write_runbook(tmp_path, {1: [{
        "id": "e0", "uses": "shell.run", "timeout": timeout,
        "with": {"command": "echo effect-0 >> effects.log", "unless": "grep -qx effect-0 effects.log"}}]})
    state = tmp_path / "st"
    assert migrate("run", "-r", str(runbook), "--state-dir", str(state), "--dry-run").returncode == 0
    orphan = subprocess.Popen(["/bin/sh", "-c", f"while [ ! -e {tmp_path}/release ]; do sleep 0.05; done; "
                               f"echo effect-0 >> {tmp_path}/effects.log"], start_new_session=True)
    _wait_for(lambda: start_ticks(orphan.pid) is not None)
    doc = {"version": 1, "runbook": "test", "runbook_path": str(runbook), "runbook_digest": None,
           "created_at": time.time(), "updated_at": time.time(), "extra": {"last_run": {"phases": [], "steps": []}},
           "steps": {"e0": {"status": "running", "stage": "apply", "attempts": 1, "phase": 1, "processes": [
               {"kind": "local", "what": "command", "started_at": time.time(), "pid": orphan.pid, "pgid": orphan.pid,
                "start_ticks": start_ticks(orphan.pid), "host": os.uname().nodename,
                "boot": Path("/proc/sys/kernel/random/boot_id").read_text().strip()}]}}}
    state.mkdir(exist_ok=True)
    (state / "test.state.json").write_text(json.dumps(doc))
    return runbook, state, orphan


def test_resume_waits_for_a_still_running_child_of_a_dead_run_then_checks_again(tmp_path: Path) -> None:
    runbook, state, orphan = _orphan_state(tmp_path, timeout=60)
    try:
        resume = _popen("resume", "-r", str(runbook), "--state-dir", str(state))
        _wait_for(lambda: any(e["event"] == "orphan-waiting" for e in _events(state)), timeout=60)
        assert orphan.poll() is None and not (tmp_path / "effects.log").exists()  # waited for, not run beside
        (tmp_path / "release").touch()
        out, err = resume.communicate(timeout=60)
    finally:
        orphan.kill()
        orphan.wait()
    assert resume.returncode == 0, err
    assert f"still running (pid {orphan.pid}" in out and "ended on its own" in out
    assert "already in place" in out  # checked again after the wait: not run a second time
    assert (tmp_path / "effects.log").read_text().split() == ["effect-0"]
    names = [e["event"] for e in _events(state)]
    assert names.index("orphan-waiting") < names.index("orphan-finished") < names.index("step-already-applied")


def test_resume_stops_a_child_that_outlives_the_wait(tmp_path: Path) -> None:
    runbook, state, orphan = _orphan_state(tmp_path, timeout=1)
    try:
        proc = migrate("resume", "-r", str(runbook), "--state-dir", str(state))
        orphan.wait(timeout=10)  # stopped by the resume
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
    assert proc.returncode == 0, proc.stderr
    assert f"stopped process group {orphan.pid}" in proc.stdout
    assert any(e["event"] == "orphan-stopped" for e in _events(state))
    assert (tmp_path / "effects.log").read_text().split() == ["effect-0"]  # the resumed run's, only


def test_a_reused_pid_is_not_taken_for_the_recorded_child(tmp_path: Path) -> None:
    runbook, state, orphan = _orphan_state(tmp_path, timeout=60)
    doc = json.loads((state / "test.state.json").read_text())
    doc["steps"]["e0"]["processes"][0]["start_ticks"] -= 1  # same pid, another start time: another process
    (state / "test.state.json").write_text(json.dumps(doc))
    try:
        started = time.monotonic()
        proc = migrate("resume", "-r", str(runbook), "--state-dir", str(state))
        assert proc.returncode == 0, proc.stderr
        assert "still running" not in proc.stdout and time.monotonic() - started < 50
        assert orphan.poll() is None  # not ours: left alone
    finally:
        orphan.kill()
        orphan.wait()


def test_shell_run_gets_only_the_baseline_and_the_named_environment(tmp_path: Path) -> None:
    runbook = write_runbook(tmp_path, {1: [{"id": "env", "uses": "shell.run",
                                            "with": {"command": "env > env.out", "env": {"NAMED": "yes"}}}]})
    proc = migrate("run", "-r", str(runbook), "--state-dir", str(tmp_path / "st"),
                   env={"LEAKY_TOKEN": "canary-env-Zq8v1", "LANG": "C.UTF-8"})
    assert proc.returncode == 0, proc.stderr
    names = {line.split("=", 1)[0] for line in (tmp_path / "env.out").read_text().splitlines()}
    assert "canary-env-Zq8v1" not in (tmp_path / "env.out").read_text()
    assert names - {"PWD", "SHLVL", "_", "OLDPWD"} == {"PATH", "HOME", "LANG", "NAMED"}


# -- a lock that cannot be split --------------------------------------------------------------------

def test_two_runs_racing_with_the_lock_file_removed_exactly_one_runs(tmp_path: Path) -> None:
    runbook = write_runbook(tmp_path, {1: [{"id": "e0", "uses": "shell.run", "with": {
        "command": "while [ ! -e release ]; do sleep 0.05; done; echo effect-0 >> effects.log",
        "unless": "grep -qx effect-0 effects.log"}}]})
    state = tmp_path / "st"
    args = ["-r", str(runbook), "--state-dir", str(state)]
    first = _popen("run", *args)
    try:
        _wait_for(lambda: _state(state)["steps"].get("e0", {}).get("processes"))
        (state / "test.lock").unlink()  # what an operator's `rm` does
        second = migrate("run", *args)
        assert second.returncode == 3, second.stderr
        assert f"locked by pid {first.pid}" in second.stderr and "lock file was removed" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        status = migrate("status", *args)
        assert f"pid {first.pid}" in status.stdout, status.stdout
        refused = migrate("unlock", *args)
        assert refused.returncode == 1 and "held by a running process" in refused.stderr
        assert first.poll() is None  # it held the lock all along
    finally:
        (tmp_path / "release").touch()
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert (tmp_path / "effects.log").read_text().split() == ["effect-0"]


def test_many_concurrent_runs_one_effect(tmp_path: Path) -> None:
    runbook = effect_runbook(tmp_path, n=1, seconds=1)
    state = tmp_path / "st"
    procs = [_popen("run", "-r", str(runbook), "--state-dir", str(state)) for _ in range(4)]
    codes = sorted(p.wait(timeout=60) for p in procs)
    for p in procs:
        p.communicate()
    assert codes.count(0) >= 1 and set(codes) <= {0, 3}, codes
    assert (tmp_path / "effects.log").read_text().split() == ["effect-0"]


def test_lock_rechecks_the_inode_after_flock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock file replaced between our open and our flock: we lock the one the path names now."""
    import fcntl

    from migrator.store import lock as lockmod

    path = tmp_path / "x.lock"
    real_flock = fcntl.flock
    swapped: list[int] = []

    def flock(fd: int, op: int) -> None:
        if not swapped:
            swapped.append(os.fstat(fd).st_ino)
            path.unlink()
            path.write_text("")  # another inode at the same path
        real_flock(fd, op)

    monkeypatch.setattr(lockmod.fcntl, "flock", flock)
    lk = lockmod.RunLock(path)
    lk.acquire("test")
    try:
        assert lk.still_ours() and os.stat(path).st_ino != swapped[0]
    finally:
        lk.release()


# -- a state that cannot be fooled ------------------------------------------------------------------

BAD_STEPS = [
    ("a string record", "just a string", r"steps\.e0: Input should be a valid dictionary"),
    ("numeric status", {"status": 5}, r"steps\.e0\.status: Input should be 'pending'"),
    ("unknown status", {"status": "bogus"}, r"steps\.e0\.status: .*found \"bogus\""),
    ("attempts a list", {"attempts": [1]}, r"steps\.e0\.attempts: Input should be a valid integer"),
    ("attempts a bool", {"attempts": True}, r"steps\.e0\.attempts: Input should be a valid integer"),
    ("negative attempts", {"attempts": -1}, r"steps\.e0\.attempts: Input should be greater than or equal to 0"),
    ("facts a list", {"facts": [1]}, r"steps\.e0\.facts: Input should be a valid dictionary"),
    ("unknown field", {"colour": "red"}, r"steps\.e0\.colour: Extra inputs are not permitted"),
    ("bad process", {"processes": [{"kind": "local", "pid": "x"}]}, r"steps\.e0\.processes\.0\.pid"),
]


@pytest.mark.parametrize(("case", "record", "expected"), BAD_STEPS, ids=[c[0] for c in BAD_STEPS])
def test_a_state_field_of_the_wrong_kind_is_refused_and_kept(tmp_path: Path, case: str, record: Any,
                                                               expected: str) -> None:
    import re

    runbook = effect_runbook(tmp_path, n=1, seconds=0)
    state = tmp_path / "st"
    assert migrate("run", "-r", str(runbook), "--state-dir", str(state)).returncode == 0
    path = state / "test.state.json"
    doc = json.loads(path.read_text())
    doc["steps"]["e0"] = record if isinstance(record, str) else {**doc["steps"]["e0"], **record}
    path.write_text(json.dumps(doc))
    before = path.read_bytes()
    for verb in ("run", "resume", "status", "rollback --all"):
        proc = migrate(*verb.split(), "-r", str(runbook), "--state-dir", str(state))
        assert proc.returncode == 2, (verb, proc.stderr)
        assert "Traceback" not in proc.stderr and re.search(expected, proc.stderr), proc.stderr
        assert "left untouched" in proc.stderr
    assert path.read_bytes() == before


def test_last_run_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    runbook = effect_runbook(tmp_path, n=1, seconds=0)
    state = tmp_path / "st"
    assert migrate("run", "-r", str(runbook), "--state-dir", str(state)).returncode == 0
    doc = json.loads((state / "test.state.json").read_text())
    doc["extra"]["last_run"] = "phase 1"
    (state / "test.state.json").write_text(json.dumps(doc))
    proc = migrate("resume", "-r", str(runbook), "--state-dir", str(state))
    assert proc.returncode == 2 and "extra.last_run" in proc.stderr, proc.stderr


def test_status_works_on_a_read_only_state_directory(tmp_path: Path) -> None:
    runbook = effect_runbook(tmp_path, n=1, seconds=0)
    state = tmp_path / "st"
    assert migrate("run", "-r", str(runbook), "--state-dir", str(state)).returncode == 0
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --mount is not allowed here (root in a user namespace needed)")
    script = (f"mount --bind {state} {state} && mount -o remount,ro,bind {state} && "
              f"touch {state}/probe 2>/dev/null && exit 99; "
              f"exec {sys.executable} -m migrator status --json -r {runbook} --state-dir {state}")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["steps"][0]["status"] == "succeeded"


# -- a journal that masks first and does not tear ---------------------------------------------------

@pytest.mark.parametrize("secret", ['canary"quote-Zq8v1', "canary\\back-Zq8v1", "canary\nline-Zq8v1",
                                    "canary-é-ünïcode-Zq8v1", "canary\t\u2028-Zq8v1"])
def test_the_journal_masks_secrets_before_serialising(tmp_path: Path, secret: str) -> None:
    redact.register(secret)
    try:
        journal = Journal(tmp_path / "j.jsonl")
        journal.append("x", error=f"failed with {secret} inside", nested={"k": [secret]}, **{secret: 1})
        raw = (tmp_path / "j.jsonl").read_bytes()
        for form in (secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]):
            assert form.encode() not in raw, form
        assert journal.read()[0]["error"] == "failed with *** inside"
    finally:
        redact.clear()


def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append("first")
    with open(tmp_path / "j.jsonl", "ab") as fh:
        fh.write(b'{"event": "torn", "ts": 1')  # a crash in the middle of a write
    journal.append("second")
    assert [e["event"] for e in journal.read()] == ["first", "second"]


def test_a_short_write_to_the_journal_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrator.store import journal as journalmod

    real = os.write
    monkeypatch.setattr(journalmod.os, "write", lambda fd, data: real(fd, data[:10]))
    with pytest.raises(PermanentError, match=r"j\.jsonl: short write to the journal \(10 of"):
        Journal(tmp_path / "j.jsonl").append("x")


def test_the_journal_line_comes_before_the_state_says_succeeded(tmp_path: Path) -> None:
    """A kill between the two leaves the step `running` in the state (checked again on resume), never
    `succeeded` with no event: shown by failing the state write right after the journal's line."""
    from tests.util import engine

    runbook = effect_runbook(tmp_path, n=1, seconds=0)
    eng = engine(runbook, tmp_path / "st")
    saves = {"n": 0}
    real_save = eng.session.store.save

    def save(state: Any) -> None:
        if any(e["event"] == "step-succeeded" for e in eng.session.journal.read()):
            saves["n"] += 1
            raise KeyboardInterrupt  # "killed" at the state write after the journal line
        real_save(state)

    eng.session.store.save = save
    with pytest.raises((KeyboardInterrupt, Exception)):
        eng.run()
    on_disk = _state(tmp_path / "st")["steps"]["e0"]
    assert on_disk["status"] == "running" and saves["n"] >= 1


# -- atomic writes ----------------------------------------------------------------------------------

def test_enospc_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "write", full)
    target = tmp_path / "sub" / "file.json"
    with pytest.raises(PermanentError, match=rf"{target}: cannot write: No space left on device"):
        atomic.write_atomic(target, b"data")
    assert not list(target.parent.iterdir())  # its temp file removed


def test_stale_temp_files_of_dead_writers_are_cleaned_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "30"])
    try:
        _wait_for(lambda: start_ticks(live.pid) is not None)
        target = tmp_path / "f.json"
        stale = tmp_path / f".f.json.mig-{dead.pid}-12345-0123abcd.tmp"
        reused = tmp_path / f".f.json.mig-{live.pid}-{start_ticks(live.pid) - 1}-0123abce.tmp"  # pid reused
        busy = tmp_path / f".f.json.mig-{live.pid}-{start_ticks(live.pid)}-0123abcf.tmp"
        other = tmp_path / ".f.json.something.tmp"  # not our pattern
        for p in (stale, reused, busy, other):
            p.write_text("x")
        atomic.write_atomic(target, b"new")
        assert not stale.exists() and not reused.exists()
        assert busy.exists() and other.exists() and target.read_bytes() == b"new"
    finally:
        live.kill()
        live.wait()


def test_a_var_ending_in_a_newline_keeps_it(tmp_path: Path) -> None:
    from migrator.runbook.interpolate import interpolate

    assert interpolate("${vars.x}\n", lambda ns, key: "v") == "v\n"
    assert interpolate("${vars.x}", lambda ns, key: [1]) == [1]


def test_status_names_the_holder_liveness(tmp_path: Path) -> None:
    runbook = effect_runbook(tmp_path, n=1, seconds=0)
    assert status_json(runbook, tmp_path / "st")["lock"] == "free"


# -- secrets where they belong ----------------------------------------------------------------------

def test_tls_verify_false_is_refused_on_a_production_runbook(tmp_path: Path) -> None:
    import re

    check = {"id": "probe", "uses": "check.http",
             "with": {"url": "https://127.0.0.1:1/", "tls_verify": False},
             "gate": {"checks": [{"http": {"url": "https://127.0.0.1:1/", "tls_verify": False}}]}}
    runbook = write_runbook(tmp_path, {1: [check]})
    text = runbook.read_text()
    runbook.write_text(text + "production: true\n")
    proc = migrate("plan", "-r", str(runbook), "--state-dir", str(tmp_path / "st"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert re.search(r"phase1\.yaml:\d+: steps\.0\.with\.tls_verify: tls_verify: false is refused on a production", lines[0] + lines[1])
    assert re.search(r"steps\.0\.gate\.checks\.0\.http\.tls_verify: tls_verify: false is refused", proc.stderr)
    runbook.write_text(text)  # the same on a rehearsal runbook: accepted
    assert migrate("plan", "-r", str(runbook), "--state-dir", str(tmp_path / "st")).returncode == 0


def test_file_write_defaults_to_0600_when_its_content_holds_a_secret(tmp_path: Path) -> None:
    runbook = write_runbook(tmp_path, {1: [
        {"id": "secret-file", "uses": "file.write", "with": {"path": "s.conf", "content": "token=${secrets.tok}\n"}},
        {"id": "plain-file", "uses": "file.write", "with": {"path": "p.conf", "content": "hello\n"}},
        {"id": "chosen-mode", "uses": "file.write", "with": {"path": "c.conf", "content": "x", "mode": 0o640}},
    ]}, secrets={"tok": {"env": "T_FILE_SECRET"}})
    proc = migrate("run", "-r", str(runbook), "--state-dir", str(tmp_path / "st"),
                   env={"T_FILE_SECRET": "canary-file-Zq8v1"})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s.conf").read_text() == "token=canary-file-Zq8v1\n"
    assert (tmp_path / "s.conf").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "p.conf").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "c.conf").stat().st_mode & 0o777 == 0o640
