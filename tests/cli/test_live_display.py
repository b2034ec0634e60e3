"""The live display on a real terminal (a pty, rendered by the pyte terminal emulator): prompts, log lines
and the run's own lines stay whole above one bar; NO_COLOR honoured; copies show bytes, rate, time left."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pyte

from tests.util import REPO, write_runbook

COLS, ROWS = 130, 60


class Terminal:
    """A process on a pty; what it draws is replayed into a pyte screen."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.master, slave = pty.openpty()
        os.set_blocking(self.master, False)
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, close_fds=True,
                                     env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color",
                                          "COLUMNS": str(COLS), "LINES": str(ROWS), **env})
        os.close(slave)
        self.raw = b""
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)

    def pump(self, timeout: float = 0.1) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            self.raw += data
            self.stream.feed(data)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            assert time.monotonic() < deadline, f"{text!r} not on screen:\n{self.text()}"
            assert self.proc.poll() is None or self._drain(), f"exited before {text!r}:\n{self.text()}"
            self.pump()

    def _drain(self) -> bool:
        self.pump(0.2)
        return text_in(self)

    def send(self, data: str) -> None:
        os.write(self.master, data.encode())

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump()
        for _ in range(10):
            self.pump(0.05)
        os.close(self.master)
        return self.proc.wait(5)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.lines())


def text_in(_: Terminal) -> bool:
    return True


DRIVER = r"""
import time, structlog
from migrator import logs, progress
logs.configure("auto", "info")
log = structlog.get_logger("migrator")
with progress.RunProgress(enabled=True) as p:
    p.steps(3)
    p.step_started(1, 1, 3, "copy-db")
    bar = p.task("copy rentguy", total=50 * 1024 * 1024, unit="B")
    for i in range(20):
        bar.advance(1024 * 1024)
        log.info("table copied [public.orders]", step="copy-db", n=i)
        time.sleep(0.05)
    progress.say("✓ [1] copy-db (1.0s) [literal] [bold]not bold[/bold]")
    answer = progress.ask("[approve] Ship it? [y/N] ")
    progress.say(f"answer={answer.strip()}")
    time.sleep(0.3)
"""


def test_logs_prompts_and_lines_stay_whole_above_one_bar() -> None:
    term = Terminal([sys.executable, "-c", DRIVER], env={})
    term.wait_for("MB/s")
    # the copy's columns while it runs: bytes, rate, time left
    copy = next(x for x in term.lines() if "copy rentguy" in x)
    assert re.search(r"copy rentguy .*\d+(\.\d+)?/52\.4 MB · \d+(\.\d+)? MB/s · (\d+:\d\d:\d\d|-:--:--) left", copy), copy
    term.wait_for("Ship it?")
    assert not [x for x in term.lines() if "copy-db" in x and "phase 1" in x]  # the bar is down while asking
    term.send("y\n")
    assert term.finish() == 0
    lines = term.lines()
    logged = [x for x in lines if "table copied" in x]
    assert len(logged) == 20 and all("[public.orders]" in x for x in logged), "\n".join(lines)
    assert any("[literal] [bold]not bold[/bold]" in x for x in lines)  # no markup read
    prompt = [x for x in lines if "Ship it?" in x]
    assert prompt == ["[approve] Ship it? [y/N] y"], "\n".join(lines)
    assert "answer=y" in lines
    bars = [x for x in lines if "phase 1 · step 1/3 · copy-db" in x]
    assert len(bars) == 1, "the bar was duplicated:\n" + "\n".join(lines)
    # the bar is the last thing on screen: every line printed during it went above it
    last = max(i for i, x in enumerate(lines) if x)
    assert "copy-db" in lines[last - 1] + lines[last] and "answer=y" not in lines[last]


def test_no_color_is_honoured() -> None:
    coloured = Terminal([sys.executable, "-c", DRIVER], env={})
    coloured.wait_for("Ship it?")
    coloured.send("n\n")
    assert coloured.finish() == 0
    plain = Terminal([sys.executable, "-c", DRIVER], env={"NO_COLOR": "1"})
    plain.wait_for("Ship it?")
    plain.send("n\n")
    assert plain.finish() == 0
    sgr_colour = re.compile(rb"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;[0-9;]+)m")
    assert sgr_colour.search(coloured.raw)  # the check can fail: colours are there without NO_COLOR
    assert not sgr_colour.search(plain.raw), plain.raw[:2000]
    assert b"answer=n" in plain.raw


def test_an_approval_prompt_from_migrate_run(tmp_path: Path) -> None:
    rb = write_runbook(tmp_path, {1: [
        {"id": "before", "uses": "shell.run", "with": {"command": "sleep 0.5"}},
        {"id": "go-no-go", "uses": "approval", "needs": ["before"], "with": {"prompt": "Cut over [now]?"}},
        {"id": "after", "uses": "shell.run", "needs": ["go-no-go"], "with": {"command": "true"}},
    ]})
    term = Terminal([sys.executable, "-m", "migrator", "run", "-r", str(rb), "--state-dir", str(tmp_path / "st")],
                    env={"NO_COLOR": "1"})
    term.wait_for("[y/N]")
    term.send("yes\n")
    assert term.finish() == 0, term.text()
    lines = term.lines()
    assert "[go-no-go] Cut over [now]? [y/N] yes" in lines, "\n".join(lines)
    assert any(x.startswith("✓ [1] after") for x in lines)
    assert len([x for x in lines if "step 3/3" in x or "step 2/3" in x]) == 1, "\n".join(lines)


def test_a_parallel_run_shows_every_running_step(tmp_path: Path) -> None:
    # Three steps wait for a file, so all three are on screen at once; the fourth needs the first.
    wait = "while [ ! -e go ]; do sleep 0.05; done"
    rb = write_runbook(tmp_path, {1: [
        *({"id": f"copy-{n}", "uses": "shell.run", "with": {"command": wait}} for n in ("a", "b", "c")),
        {"id": "after", "uses": "shell.run", "needs": ["copy-a"], "with": {"command": "true"}},
    ]})
    term = Terminal([sys.executable, "-m", "migrator", "run", "-r", str(rb), "--state-dir", str(tmp_path / "st"),
                     "--parallel", "3"], env={"NO_COLOR": "1"}, cwd=tmp_path)
    term.wait_for("3 running: copy-a, copy-b, copy-c")
    rows = [x for x in term.lines() if x.startswith("▶ [1] copy-") and "running" in x]
    assert len(rows) == 3, term.text()  # one row per running step, each with its elapsed time
    (tmp_path / "go").touch()
    assert term.finish() == 0, term.text()
    lines = term.lines()
    assert all(any(x.startswith(f"✓ [1] {s}") for x in lines) for s in ("copy-a", "copy-b", "copy-c", "after"))
    assert not [x for x in lines if "running" in x and "▶" in x], "rows of ended steps stayed:\n" + "\n".join(lines)
