"""Remote processes of a crashed run (over SSH, docker exec) are found again on resume: waited for or stopped.

Against the private VPS (its own sshd and dockerd): migrate is SIGKILLed while a step's command runs on
the VPS; the command runs on there (nothing stops it), and the resume must neither run the step beside it
nor lose it: it waits for it (the effect happens once) or stops it (the effect never happens half-way).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.util import MIGRATE, REPO, write_runbook

from .conftest import PROJECT, VPS


def _runbook(tmp: Path, vps: VPS, steps: dict[int, list[dict[str, Any]]]) -> Path:
    why = "this test moves no data"
    coverage = {"exclude": [{"database": "db/shop", "reason": why}, {"volume": "dbdata", "reason": why},
                            {"volume": "uploads", "reason": why}]}
    return write_runbook(tmp, steps, environment={"source": vps.ssh_environment()}, coverage=coverage)


def _marked(marker: str) -> list[int]:
    """Processes of this machine (the VPS's sshd and dockerd run here) whose environment holds the marker."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"MIGRATOR_PROC={marker}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def _recorded(state: Path, step: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(state.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return list(doc["steps"].get(step, {}).get("processes", []))


def _events(state_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in state_dir.glob("*.jsonl") for line in p.read_text().splitlines()]


def test_ssh_command_of_a_killed_run_is_waited_for_and_runs_once(vps: VPS, tmp_path: Path) -> None:
    effects, release = tmp_path / "effects.log", tmp_path / "release"
    # The command runs until the test releases it (not for a fixed time: on a loaded machine a resume may
    # take seconds to start, and must still find it running).
    command = f"while [ ! -e {release} ]; do sleep 0.1; done; echo effect >> {effects}"
    rb = _runbook(tmp_path, vps, {1: [{"id": "remote", "uses": "shell.run", "with": {
        "on": "source", "command": command, "unless": f"grep -qx effect {effects}"}}]})
    sd = tmp_path / "state"
    state = sd / "test.state.json"
    proc = subprocess.Popen([*MIGRATE, "run", "--runbook", str(rb), "--state-dir", str(sd)],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    marker = None
    while marker is None:
        assert time.monotonic() < deadline and proc.poll() is None, "the remote command was never recorded"
        alive = [r["marker"] for r in _recorded(state, "remote") if r.get("kind") == "remote" and _marked(r["marker"])]
        time.sleep(0.5)
        # Still there half a second later: the command (the `unless` check ends in milliseconds).
        alive = [m for m in alive if _marked(m)]
        marker = alive[0] if alive else None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)
    assert _marked(marker), "the remote command died with migrate: this test would prove nothing"
    assert not effects.exists()

    resume = subprocess.Popen([*MIGRATE, "resume", "--runbook", str(rb), "--state-dir", str(sd)],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while "remote-orphan-waiting" not in [e["event"] for e in _events(sd)]:
        assert time.monotonic() < deadline and resume.poll() is None, "the resume did not wait for the command"
        time.sleep(0.1)
    assert not effects.exists() and _marked(marker)  # waiting, not running the step beside it
    release.touch()
    out, err = resume.communicate(timeout=60)
    assert resume.returncode == 0, err
    assert effects.read_text() == "effect\n"  # waited for, then found done: not run a second time
    kinds = [e["event"] for e in _events(sd) if e.get("marker") == marker]
    assert kinds == ["remote-orphan-waiting", "remote-orphan-finished"], kinds
    assert "already in place" in out + err
    assert _recorded(state, "remote") == [] and not _marked(marker)


def test_docker_exec_of_a_dead_connection_is_stopped(vps: VPS, tmp_path: Path) -> None:
    """An exec whose stream is gone keeps running in its container: found there (as the same user) by its
    marker, waited for up to the bound, then stopped; the effect it would have had never happens."""
    from migrator.adapters import remoteproc, resources
    from migrator.adapters.localproc import Recorder
    from migrator.commands.common import load

    rb = load(_runbook(tmp_path, vps, {1: [{"id": "noop", "uses": "shell.run", "with": {"command": "true"}}]}))
    opened: dict[str, Any] = {}

    def resource(key: str, factory: Any) -> Any:
        if key not in opened:
            opened[key] = factory()
        return opened[key]

    recorded: list[dict[str, Any]] = []
    remoteproc.bind(Recorder(recorded.append, lambda key: recorded.remove(
        next(r for r in recorded if r.get("marker") == key))))
    worker = f"{PROJECT}-worker-1"
    dr = resources.docker_source(resource, rb, "test")
    try:
        with dr.exec_stream(worker, ["sh", "-c", "sleep 30; echo effect > /tmp/remote-effect"]):
            time.sleep(0.5)  # left without waiting for its end: the record stays
        assert dr.exec_run(worker, ["true"]) [0] == 0
    finally:
        remoteproc.bind(None)
    (rec,) = recorded  # `true` ended and was dropped; the sleeping one stays
    assert rec["via"] == "docker:source" and rec["container"] == worker
    assert _marked(rec["marker"])
    events: list[tuple[str, dict[str, Any]]] = []
    started = time.monotonic()
    remoteproc.settle(recorded, finder_for=remoteproc.finders(resource, rb, "test"), wait_s=1.0,
                      say=lambda _: None, journal=lambda e, **f: events.append((e, f)))
    assert time.monotonic() - started < 25  # stopped after the 1 s bound, not waited out
    assert [e for e, _ in events] == ["remote-orphan-waiting", "remote-orphan-stopped"]
    assert events[1][1]["left"] == [] and not _marked(rec["marker"])
    time.sleep(0.2)
    assert vps.docker("exec", worker, "cat", "/tmp/remote-effect", check=False).returncode != 0
    for res in reversed(list(opened.values())):
        res.close()
