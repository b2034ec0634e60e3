"""`migrate serve` without a browser: loopback only, read-only (nothing written, no lock taken), GET only,
the Host header checked, every value escaped, and Ctrl-C exits 130 (the browser test is test_serve_browser)."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from migrator.commands import serve, webpage
from migrator.errors import InputError
from tests.util import MIGRATE, REPO, migrate, write_runbook


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
        import json

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
