"""`migrate serve` on the rehearsal's own state, watched by Chromium while the rehearsal runs (#22): the first
moment the page shows a copy of bytes under way (done of total, with a rate), the page and that copy's bar are screenshotted and
what the page said is kept, for tests/e2e/test_rehearsal.py to check."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cli.test_serve import start_serve
from tests.cli.test_serve_browser import ARGS, CHROMIUM, HEIGHT, WIDTH

POLL_S = 0.25
_UNIT = r"[\d.]+ (?:B|KiB|MiB|GiB)"
BYTES_COPY = re.compile(rf"{_UNIT} of {_UNIT} · {_UNIT}/s")  # a copy of bytes, with its rate (not a count of paths)


@dataclass
class Capture:
    step: str  # the running step the copy belongs to (data-step)
    text: str  # what the page said of the copy: "… 2.0 MiB of 8.0 MiB · 1.1 MiB/s · 5 s left"
    value: float  # the bar's value and max, as the page had them at the screenshot
    maximum: float
    page_png: Path
    bar_png: Path


class LiveView:
    def __init__(self, runbook: Path, state_dir: Path, out_dir: Path) -> None:
        self.runbook, self.state_dir, self.out_dir = runbook, state_dir, out_dir
        self.capture: Capture | None = None
        self.error: str | None = None
        self.polls = 0
        self._stop = threading.Event()
        self._server: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server, url = start_serve("-r", str(self.runbook), "--state-dir", str(self.state_dir))
        self._thread = threading.Thread(target=self._watch, args=(url,), name="live-view", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        if self._server is not None and self._server.poll() is None:
            self._server.send_signal(signal.SIGINT)
            self._server.communicate(timeout=30)

    def _watch(self, url: str) -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch_persistent_context(
                    str(self.out_dir / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
                    viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1)
                try:
                    page = browser.new_page()
                    page.goto(url)
                    while not self._stop.is_set() and self.capture is None:
                        self.polls += 1
                        self.capture = self._look(page)
                        time.sleep(POLL_S)
                finally:
                    browser.close()
        except Exception as exc:  # noqa: BLE001 (reported by the test that reads it, with the reason)
            self.error = f"{exc.__class__.__name__}: {exc}"

    def _look(self, page: Any) -> Capture | None:
        # The page swaps its fragment every second: read a bar and screenshot it in one go, and keep the
        # capture only if the figures the screenshot shows are the ones read (same value after the shot).
        for bar in page.locator("div.copy").all():
            try:
                meter = bar.locator("progress")
                value, maximum = (float(meter.get_attribute(a, timeout=1000) or 0) for a in ("value", "max"))
                if not (0 < value < maximum):
                    continue
                step, text = bar.get_attribute("data-step", timeout=1000) or "", bar.inner_text(timeout=1000)
                if not BYTES_COPY.search(text):
                    continue
                page_png, bar_png = self.out_dir / "serve-rehearsal.png", self.out_dir / "serve-rehearsal-bar.png"
                page.screenshot(path=str(page_png), timeout=5000)
                meter.screenshot(path=str(bar_png), timeout=5000)
                if float(meter.get_attribute("value", timeout=1000) or 0) == value:
                    return Capture(step, text, value, maximum, page_png, bar_png)
            except Exception:  # noqa: BLE001 (the element was replaced under us: look again)
                continue
        return None
