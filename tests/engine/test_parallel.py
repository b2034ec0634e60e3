"""Several steps at once (`--parallel N`): overlap, the default unchanged, a failure, exclusive groups, the
runbook's `parallel:`, Ctrl-C, and SIGKILL at random moments converging on resume with every effect once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import InputError, PermanentError
from migrator.store.state import StateStore
from tests.util import MIGRATE, REPO, engine, migrate, write_runbook

CANARY = "canary-par-4e1d-secret"


def effect(sid: str, sleep: float = 0.4, needs: list[str] | None = None, *, gate: str = "") -> dict[str, Any]:
    """A step whose one effect is a line in effects.log (a single O_APPEND write), done exactly once: its
    `unless` finds the line. `gate`: a file that must exist before it sleeps (else it waits for it)."""
    wait = f"while [ ! -e {gate} ]; do sleep 0.05; done; " if gate else ""
    return {"id": sid, "uses": "shell.run", "needs": needs or [],
            "with": {"command": f"{wait}sleep {sleep}; echo {sid} >> effects.log",
                     "unless": f"grep -qx {sid} effects.log", "env": {"TOKEN": "${secrets.token}"}}}


def times(eng: Any, ids: list[str]) -> list[tuple[float, float]]:
    return [(eng.state.steps[i].started_at, eng.state.steps[i].finished_at) for i in ids]


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAR_TOKEN", CANARY)


SECRETS = {"token": {"env": "PAR_TOKEN"}}


def test_independent_steps_overlap_with_parallel_and_not_without(tmp_path: Path, token: None) -> None:
    ids = ["s1", "s2", "s3", "s4"]
    rb = write_runbook(tmp_path / "rb", {1: [effect(i, 0.5) for i in ids]}, secrets=SECRETS)
    eng = engine(rb, parallel=4)
    assert eng.run() == 4
    spans = times(eng, ids)
    # All four were running at one moment: every start came before every end.
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans
    assert sorted((tmp_path / "rb" / "effects.log").read_text().split()) == ids

    # The default (parallel 1): one after the other, in file order, exactly as before.
    rb1 = write_runbook(tmp_path / "one", {1: [effect(i, 0.2) for i in ids]}, secrets=SECRETS)
    serial = engine(rb1)
    assert serial.parallel() == 1
    assert serial.run() == 4
    spans = times(serial, ids)
    assert all(spans[k][1] <= spans[k + 1][0] for k in range(3)), spans
    assert (tmp_path / "one" / "effects.log").read_text().split() == ids
    assert [x for x in serial.said if x.startswith("▶")] == [f"▶ [1] {i} (shell.run)" for i in ids]


def test_needs_and_phases_order_a_parallel_run(tmp_path: Path, token: None) -> None:
    rb = write_runbook(tmp_path / "rb", {
        1: [effect("a", 0.3), effect("b", 0.6), effect("c", 0.1, ["a"])],
        2: [effect("d", 0.1)],  # no needs: still after every step of phase 1 (a phase is a barrier)
    }, secrets=SECRETS)
    eng = engine(rb, parallel=4)
    assert eng.run() == 4
    st = eng.state.steps
    assert st["c"].started_at >= st["a"].finished_at  # needs a
    assert st["c"].started_at < st["b"].finished_at  # but not b: ran beside it
    assert st["d"].started_at >= max(st[x].finished_at for x in "abc")


def test_a_failure_stops_new_starts_and_the_running_ones_finish(tmp_path: Path, token: None) -> None:
    bad = {"id": "bad", "uses": "shell.run", "with": {"command": "sleep 0.2; exit 3"}}
    rb = write_runbook(tmp_path / "rb", {1: [effect("slow", 1.2), bad, effect("late", 0.1), effect("later", 0.1)]},
                       secrets=SECRETS)
    eng = engine(rb, parallel=2)
    with pytest.raises(PermanentError, match="command exited 3"):
        eng.run()
    st = eng.state.steps
    assert st["bad"].status == "failed"
    assert st["slow"].status == "succeeded" and st["slow"].finished_at > st["bad"].finished_at
    assert "late" not in st or st["late"].status == "pending"  # its slot freed, but nothing new started
    assert "later" not in st or st["later"].status == "pending"
    events = [(e["event"], e.get("step")) for e in eng.session.journal.read()]
    assert ("step-failed", "bad") in events and ("step-succeeded", "slow") in events
    assert not [e for e in events if e[1] in ("late", "later")]
    # On disk as in memory: the state file is the one writer's last word.
    on_disk = StateStore(eng.session.store.path).load("test", str(rb)).steps
    assert {k: v.status for k, v in on_disk.items()} == {k: v.status for k, v in st.items()}

    # resume picks every one of them up (the failed one too, once fixed).
    (tmp_path / "rb" / "phase1.yaml").write_text((tmp_path / "rb" / "phase1.yaml").read_text().replace("exit 3", "true"))
    again = engine(rb, parallel=2, accept_changes=True)
    again.resume()
    assert {k: v.status for k, v in again.state.steps.items()} == dict.fromkeys(["slow", "bad", "late", "later"], "succeeded")
    assert sorted((tmp_path / "rb" / "effects.log").read_text().split()) == ["late", "later", "slow"]


def test_an_exclusive_group_never_runs_two_at_once(tmp_path: Path, token: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrator.steps.generic import ShellRun

    monkeypatch.setattr(ShellRun, "exclusive", "test-group")  # as compose.freeze/thaw are "compose"
    ids = ["x1", "x2", "x3"]
    rb = write_runbook(tmp_path / "rb", {1: [effect(i, 0.2) for i in ids]}, secrets=SECRETS)
    eng = engine(rb, parallel=3)
    eng.run()
    spans = sorted(times(eng, ids))
    assert all(spans[k][1] <= spans[k + 1][0] for k in range(2)), spans


def test_the_compose_steps_share_one_exclusive_group() -> None:
    from migrator.steps.base import registered
    from migrator.steps.catalogue import load_all

    load_all()
    types = registered()
    assert {types[t].exclusive for t in ("compose.freeze", "compose.thaw", "compose.decommission")} == {"compose"}
    assert types["postgres.catchup"].exclusive is None


def test_the_runbooks_parallel_default_and_its_bad_values(tmp_path: Path, token: None) -> None:
    rb = write_runbook(tmp_path / "rb", {1: [effect("a", 0)]}, secrets=SECRETS)
    doc = rb.read_text()
    rb.write_text(doc + "parallel: 3\n")
    assert engine(rb).parallel() == 3
    assert engine(rb, parallel=2).parallel() == 2  # --parallel wins
    for bad in ("0", "33", "'4'", "two"):
        rb.write_text(doc + f"parallel: {bad}\n")
        with pytest.raises(InputError) as err:
            engine(rb)
        assert len(err.value.problems) == 1, err.value.problems
        line = err.value.problems[0]
        assert line.startswith(str(rb)) and "parallel" in line and "\n" not in line, line
    proc = migrate("run", "-r", str(rb), "--parallel", "0")
    assert proc.returncode == 2 and "--parallel" in proc.stderr and "Traceback" not in proc.stderr


def wait_until(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def running_steps(state: Path) -> list[str]:
    try:
        doc = json.loads(state.read_text())
    except (OSError, ValueError):
        return []
    return [k for k, v in doc["steps"].items() if v["status"] == "running"]


def spawn(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*MIGRATE, *args], cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO), "PAR_TOKEN": CANARY})


def test_ctrl_c_with_several_steps_running(tmp_path: Path) -> None:
    work = tmp_path / "rb"
    steps = [effect(i, 0, gate="go") for i in ("a", "b", "c")] + [effect("d", 0, ["a"])]
    rb = write_runbook(work, {1: steps}, secrets=SECRETS)
    state = work / "st" / "test.state.json"
    proc = spawn("run", "-r", str(rb), "--state-dir", str(work / "st"), "--parallel", "3", cwd=work)
    wait_until(lambda: len(running_steps(state)) == 3)
    wait_until(lambda: all(StateStore(state).load("test", str(rb)).steps[s].processes for s in "abc"))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    doc = StateStore(state).load("test", str(rb))
    assert {s: doc.steps[s].status for s in "abc"} == dict.fromkeys("abc", "interrupted"), err
    assert "d" not in doc.steps or doc.steps["d"].status == "pending"
    assert not (work / "effects.log").exists()
    (work / "go").touch()
    resumed = migrate("resume", "-r", str(rb), "--state-dir", str(work / "st"), "--parallel", "3", cwd=work,
                      env={"PAR_TOKEN": CANARY})
    assert resumed.returncode == 0, resumed.stderr
    assert sorted((work / "effects.log").read_text().split()) == ["a", "b", "c", "d"]


def test_sigkill_at_random_moments_then_resume_converges(tmp_path: Path) -> None:
    """8 SIGKILLs of `migrate run --parallel 4`, each while steps run; the state file loads after each;
    a resume then finishes with every effect exactly once and no secret written anywhere."""
    work = tmp_path / "rb"
    rng = random.Random(19)
    phase1 = [effect(f"p1-{i}", rng.choice([0.2, 0.4, 0.6])) for i in range(6)]
    phase1 += [effect("p1-join", 0.2, ["p1-0", "p1-1"])]
    phase2 = [effect(f"p2-{i}", rng.choice([0.2, 0.4]), [] if i < 3 else [f"p2-{i - 3}"]) for i in range(6)]
    rb = write_runbook(work, {1: phase1, 2: phase2}, secrets=SECRETS)
    ids = [s["id"] for s in phase1 + phase2]
    state = work / "st" / "test.state.json"
    args = ["-r", str(rb), "--state-dir", str(work / "st"), "--parallel", "4"]
    kills = several = 0
    for attempt in range(8):
        proc = spawn("run" if attempt == 0 else "resume", *args, cwd=work)
        try:
            wait_until(lambda p=proc: bool(running_steps(state)) or p.poll() is not None)
            time.sleep(rng.uniform(0, 0.5))
            if proc.poll() is None:
                several = max(several, len(running_steps(state)))
                proc.kill()
                kills += 1
        finally:
            proc.communicate(timeout=30)
        StateStore(state).load("test", str(rb))  # never torn, never invalid: it loads after every kill
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.returncode
    assert kills >= 3  # the loop did kill runs in the middle (the steps take ~2.5 s in all)
    assert several >= 2  # and at least one kill hit several steps running at once
    done = migrate("resume", *args, cwd=work, env={"PAR_TOKEN": CANARY})
    assert done.returncode == 0, done.stderr
    final = StateStore(state).load("test", str(rb))
    assert {i: final.steps[i].status for i in ids} == dict.fromkeys(ids, "succeeded")
    lines = (work / "effects.log").read_text().split()
    assert sorted(lines) == sorted(ids), lines  # each effect exactly once
    written = "".join(p.read_text(errors="replace") for p in (work / "st").rglob("*") if p.is_file())
    assert CANARY not in written
    assert '"step-started"' in written
