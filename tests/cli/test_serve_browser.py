"""`migrate serve` in a real headless browser (Debian's chromium, driven by playwright; scripts/setup.sh
installs both): a real `migrate run` in the background, the page shows its steps, a status turns from
running to succeeded without a reload, a failed step shows its error (markup in it shown as text), a
canary secret used by a step never reaches the page or the JSON, and screenshots of the page come out."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_serve import start_serve
from tests.util import MIGRATE, REPO, write_runbook

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CANARY = "canary-serve-4b9e1d-secret"
WIDTH, HEIGHT = 1280, 900


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def runbook(tmp_path: Path) -> Path:
    # `wait-go` runs until the test creates `go` (bounded: 30 s), so the page is seen while it runs.
    return write_runbook(tmp_path / "rb", {
        1: [{"id": "wait-go", "uses": "shell.run",
             "with": {"command": "for i in $(seq 300); do [ -e go ] && exit 0; sleep 0.1; done; exit 1"}}],
        2: [{"id": "leaky", "uses": "shell.run",
             "with": {"command": 'echo "token $TOKEN <b>bold</b>" >&2; exit 3', "env": {"TOKEN": "${secrets.token}"}}},
            {"id": "never", "uses": "shell.run", "needs": ["leaky"], "with": {"command": "true"}}],
    }, secrets={"token": {"env": "CANARY_TOKEN"}})


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (our own loopback URL)
        return str(resp.read().decode())


def test_the_page_follows_a_run_live_in_chromium(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run scripts/setup.sh (it installs Debian's chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)  # each wait ends as soon as it holds; this is for a loaded CI machine

    rb = runbook(tmp_path)
    state = tmp_path / "st"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CANARY_TOKEN": CANARY}
    server, url = start_serve("-r", str(rb), "--state-dir", str(state), env={"CANARY_TOKEN": CANARY})
    run = subprocess.Popen([*MIGRATE, "run", "-r", str(rb), "--state-dir", str(state)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs: list[subprocess.Popen[Any]] = [run, server]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1)
            try:
                page = browser.new_page()
                page.goto(url)
                row = page.locator('tr.step[data-step="wait-go"]')
                expect(page.locator("tr.step")).to_have_count(3)
                expect(row.locator(".status")).to_have_text("running", timeout=15_000)
                expect(page.locator("#progress")).to_have_text("0/3 steps done")
                expect(page.locator("div.now-running")).to_contain_text("wait-go")
                expect(page.locator('#timeline rect.step[data-step="wait-go"]')).to_have_attribute(
                    "data-status", "running")
                page.evaluate("window.__sameDocument = 'yes'")  # gone if the page reloads
                running_png = tmp_path / "serve-running.png"
                page.screenshot(path=str(running_png))

                (rb.parent / "go").touch()
                expect(row.locator(".status")).to_have_text("succeeded", timeout=10_000)
                leaky = page.locator('tr.step[data-step="leaky"]')
                expect(leaky.locator(".status")).to_have_text("failed", timeout=10_000)
                # The error as the state holds it: the secret masked, the markup shown as text.
                expect(leaky.locator("td.error")).to_have_text("command exited 3: token *** <b>bold</b>")
                assert leaky.locator("td.error b").count() == 0
                expect(page.locator('tr.step[data-step="never"] .status')).to_have_text("pending")
                expect(page.locator("#progress")).to_have_text("1/3 steps done, 1 failed")
                expect(page.locator("#journal")).to_contain_text("step-failed")
                assert page.evaluate("window.__sameDocument") == "yes"
                # Selecting text (an error to copy) holds the refresh, so the selection is not swapped away.
                page.evaluate("""() => { const r = document.createRange();
                    r.selectNodeContents(document.querySelector('tr.step[data-step="leaky"] td.error'));
                    getSelection().removeAllRanges(); getSelection().addRange(r); }""")
                expect(page.locator("#conn")).to_have_text("paused while text is selected", timeout=5_000)
                page.wait_for_timeout(1_500)
                assert page.evaluate("getSelection().toString()") == "command exited 3: token *** <b>bold</b>"
                page.evaluate("getSelection().removeAllRanges()")
                expect(page.locator("#conn")).to_have_text("live", timeout=5_000)
                final_png = tmp_path / "serve-final.png"
                page.screenshot(path=str(final_png), full_page=True)
                html = page.content()
            finally:
                browser.close()
        assert run.wait(30) == 1
        assert CANARY not in html
        api = fetch(url + "api/state.json")
        assert CANARY not in api and CANARY not in fetch(url + "fragment")
        assert [s["status"] for s in json.loads(api)["steps"]] == ["succeeded", "failed", "pending"]
        assert png_size(running_png) == (WIDTH, HEIGHT) and running_png.stat().st_size > 10_000
        width, height = png_size(final_png)
        assert width == WIDTH and height >= HEIGHT
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            proc.communicate(timeout=30)
    assert server.returncode == 130
