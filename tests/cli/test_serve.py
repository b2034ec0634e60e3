"""`migrate serve` without a browser: loopback only, read-only (nothing written, no lock taken), GET only,
the Host header checked, every value escaped, and Ctrl-C exits 130 (the browser test is test_serve_browser)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from migrator.commands import serve, webpage
from migrator.errors import InputError
from migrator.steps.base import Plan, Step, StrictModel, step_type
from tests.util import MIGRATE, REPO, engine, migrate, write_runbook

MIB = 1024 * 1024


def start_serve(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """A real `migrate serve --port 0` and the URL it printed."""
    proc = subprocess.Popen([*MIGRATE, "serve", "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if "http://" not in line:
        proc.kill()
        pytest.fail(f"serve printed no URL: {line!r} {proc.communicate(timeout=10)}")
    return proc, line.split(" at ", 1)[1].split()[0]


def get(url: str, method: str = "GET", host: str | None = None) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, method=method, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (a loopback URL of our own)
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def files(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*"))}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_addresses_are_accepted(host: str) -> None:
    assert serve.loopback(host) in (host, "127.0.0.1")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com", ""])
def test_other_addresses_are_refused(host: str) -> None:
    with pytest.raises(InputError, match="expected a loopback address"):
        serve.loopback(host)


def test_a_port_in_use_is_one_line_exit_2(tmp_path: Path) -> None:
    runbook = write_runbook(tmp_path / "rb", {1: [{"id": "a", "uses": "shell.run", "with": {"command": "true"}}]})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=f"--port {port}: .* already in use"):
            serve.make_server(serve.Viewer(runbook, tmp_path / "st"), "127.0.0.1", port)
    refused = migrate("serve", "--host", "0.0.0.0", "-r", str(runbook))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().startswith("--host 0.0.0.0: expected a loopback address"), refused.stderr


def test_a_state_dir_that_does_not_exist_is_not_created(tmp_path: Path) -> None:
    runbook = write_runbook(tmp_path / "rb", {1: [{"id": "a", "uses": "shell.run", "with": {"command": "true"}}]})
    snap = serve.Viewer(runbook, tmp_path / "nowhere").snapshot()
    assert [(s["id"], s["status"]) for s in snap["steps"]] == [("a", "pending")]
    assert snap["lock"] == "free" and not (tmp_path / "nowhere").exists()


def test_every_value_is_escaped() -> None:
    evil = '<script>alert(1)</script>"&'
    snap = {"runbook": evil, "now": time.time(), "lock": evil, "runbook_changed": True, "phase_names": {"1": evil},
            "progress": {"total": 1, "done": 0, "failed": 1}, "running": [], "gates_passed": [evil],
            "steps": [{"id": evil, "phase": 1, "uses": evil, "status": "failed", "attempts": 1, "started_at": None,
                       "finished_at": None, "duration_s": None, "error": evil, "stamped": False,
                       "figures": {"rows": 12, "bytes": 3 * 1024 * 1024, "seconds": 1.5}}],
            "journal": [{"ts": 1.0, "event": evil, "step": evil}], "timeline_svg": ""}
    html = webpage.page(snap)
    assert "<script>alert" not in html and html.count("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;") >= 7
    assert '<td class="figures">rows=12 bytes=3.0 MiB seconds=1.5</td>' in html
    problem = webpage.fragment({"problem": evil, "now": time.time()})
    assert "<script>alert" not in problem


def test_serve_reads_a_finished_run_writes_nothing_and_exits_130_on_ctrl_c(tmp_path: Path) -> None:
    runbook = write_runbook(tmp_path / "rb", {1: [
        {"id": "first", "uses": "shell.run", "with": {"command": "true"}},
        {"id": "second", "uses": "shell.run", "needs": ["first"], "with": {"command": "echo no >&2; exit 4"}}]})
    state = tmp_path / "st"
    assert migrate("run", "-r", str(runbook), "--state-dir", str(state)).returncode == 1
    before = files(state)
    state.chmod(0o555)  # read-only (root ignores the mode: `files` is what proves nothing was written)
    proc, url = start_serve("-r", str(runbook), "--state-dir", str(state))
    try:
        assert url.startswith("http://127.0.0.1:")
        code, body, headers = get(url + "api/state.json")
        assert code == 200 and headers["Content-Type"] == "application/json"
        snap = json.loads(body)
        assert [(s["id"], s["status"], s["attempts"]) for s in snap["steps"]] == [("first", "succeeded", 1),
                                                                                    ("second", "failed", 1)]
        assert snap["steps"][1]["error"] == "command exited 4: no" and snap["lock"] == "free"
        assert any(e["event"] == "step-failed" for e in snap["journal"])
        code, page, headers = get(url)
        assert code == 200 and "script-src 'self'" in headers["Content-Security-Policy"]
        assert 'data-step="second"' in page and "command exited 4: no" in page
        code, svg, _ = get(url + "timeline.svg")
        assert code == 200 and svg.startswith("<svg") and 'data-step="first"' in svg
        assert get(url, method="POST")[0] == 405
        assert get(url, host="attacker.example:80")[0] == 421  # DNS rebinding: not our name
        assert get(url + "nothing-here")[0] == 404
        assert files(state) == before
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        state.chmod(0o755)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "FAILED: interrupted"


class _CopyParams(StrictModel):
    gate: str
    mib: int = 8


@step_type("test.copy-until-gate")
class _CopyUntilGate(Step[_CopyParams]):
    """A copy through the engine's progress handle, as volume.copy and postgres.copy report theirs (those
    need the sandbox): 2 MiB, then the rest once the test creates the gate file (at most 30 s)."""

    def plan(self) -> Plan:
        return Plan(changes=[f"copy {self.params.mib} MiB"])

    def apply(self) -> None:
        bar = self.ctx.progress(f"copy volume {self.ctx.step_id}", total=self.params.mib * MIB, unit="B")
        bar.advance(2 * MIB)
        deadline = time.monotonic() + 30
        while not Path(self.params.gate).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        bar.advance((self.params.mib - 2) * MIB)

    def rollback(self) -> None:
        pass


def test_each_running_steps_copy_progress_is_shown(tmp_path: Path) -> None:
    """Two copies at once (--parallel 2): each running step shows its own bar, and its bar only."""
    gate = tmp_path / "gate"
    runbook = write_runbook(tmp_path / "rb", {1: [
        {"id": "copy-data", "uses": "test.copy-until-gate", "with": {"gate": str(gate)}},
        {"id": "copy-media", "uses": "test.copy-until-gate", "with": {"gate": str(gate), "mib": 4}}]})
    state = tmp_path / "st"
    viewer = serve.Viewer(runbook, state)
    seen: list[dict[str, Any]] = []

    def watch() -> None:  # the page's reader, while the engine runs in the main thread (signals)
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                snap = viewer.snapshot()
                running = snap.get("running") or []
                if len(running) == 2 and all(s["bars"] and s["bars"][0]["completed"] for s in running):
                    seen.append(snap)
                    return
                time.sleep(0.05)
        finally:
            gate.touch()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert engine(runbook, state, parallel=2).run() == 2
    watcher.join(30)
    assert seen, "the running steps' copies never showed, both at once"
    bars = {s["id"]: [(b["description"], b["completed"], b["total"], b["unit"]) for b in s["bars"]]
            for s in seen[0]["running"]}
    assert bars == {"copy-data": [("copy volume copy-data", 2 * MIB, 8 * MIB, "B")],
                    "copy-media": [("copy volume copy-media", 2 * MIB, 4 * MIB, "B")]}
    html = webpage.fragment(seen[0])
    assert "2.0 MiB of 8.0 MiB · " in html and '<progress value="2097152" max="8388608"' in html
    assert "2.0 MiB of 4.0 MiB · " in html and '<progress value="2097152" max="4194304"' in html
    assert html.count(" left</span>") == 2  # a rate and the time left, from the figures' own clock
    after = viewer.snapshot()
    assert [(s["status"], s["bars"]) for s in after["steps"]] == [("succeeded", []), ("succeeded", [])]
    assert json.loads((state / "test.progress.json").read_text())["steps"] == {}  # cleared at each step's end
