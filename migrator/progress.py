"""Progress display with rich: phase and step counters, the running step, elapsed time, transfers.

Silent when stderr is not a terminal (CI, pipes, cron): logs carry the same information.

While the display is live, everything else that reaches the terminal goes through its one console, so
the bar and the text both stay whole: the run's lines (`say`), log lines (`LiveStream`, which logs.py
writes through) and prompts (`ask`, which takes the bar down while the operator answers). Text is
printed literally: `[step]` or `[y/N]` is never read as rich markup. NO_COLOR (any value) turns colour
off here and in the logs.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import IO, Any

_live: RunProgress | None = None  # the display currently on screen, if any
_lock = threading.RLock()


def no_color() -> bool:
    """https://no-color.org: NO_COLOR set to anything but the empty string."""
    return os.environ.get("NO_COLOR", "") != ""


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, no_color=no_color(), highlight=False, emoji=False)


def _on_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def write_line(text: str, stream: IO[str] | None = None) -> None:
    """One line of output, above the live display when one is on the same terminal."""
    stream = stream or sys.stdout
    with _lock:
        live = _live
        if live is not None and live.console is not None and _on_terminal(stream):
            from rich.text import Text

            live.console.print(Text.from_ansi(text) if "\x1b[" in text else Text(text), soft_wrap=True)
            return
    stream.write(text + "\n")
    stream.flush()


def say(text: str) -> None:
    """The engine's default output (▶ ✓ lines) on stdout."""
    write_line(text, sys.stdout)


def ask(prompt: str) -> str:
    """Ask on the terminal (stderr) and read one line from stdin. A live display is taken off the screen
    while the operator answers, so neither the prompt nor the echoed answer lands inside the bar."""
    with _lock:
        live = _live
    if live is None or live.console is None:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        return sys.stdin.readline()
    with live.paused():
        from rich.text import Text

        return str(live.console.input(Text(prompt)))


class LiveStream:
    """A text stream for log lines: whole lines above the live display, else straight to `target`.

    It looks `target` up at each write when none is given, so it follows pytest's or a caller's
    replacement of sys.stderr."""

    def __init__(self, target: IO[str] | None = None) -> None:
        self._target = target
        self._buffer = ""

    @property
    def target(self) -> IO[str]:
        return self._target or sys.stderr

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            write_line(line, self.target)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            write_line(line, self.target)

    def isatty(self) -> bool:
        return _on_terminal(self.target)


class _NullTask:
    def advance(self, amount: float = 1) -> None:
        pass

    def set_total(self, total: float | None) -> None:
        pass

    def set_description(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class _RichTask:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self._p = progress
        self._id = task_id

    def advance(self, amount: float = 1) -> None:
        self._p.advance(self._id, amount)

    def set_total(self, total: float | None) -> None:
        self._p.update(self._id, total=total)

    def set_description(self, text: str) -> None:
        self._p.update(self._id, description=text)

    def close(self) -> None:
        self._p.remove_task(self._id)


def _columns() -> list[Any]:
    """Description, bar, then per task: counts (steps, paths) or bytes, rate and time left (copies)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.text import Text

    class ByUnit(ProgressColumn):
        """Bytes tasks (unit B): 1.2/3.4 GB · 85.0 MB/s · 0:00:27 left; others: 3/10 paths."""

        def __init__(self) -> None:
            super().__init__()
            self.size, self.speed, self.left = DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()

        def render(self, task: Task) -> Text:
            unit = task.fields.get("unit", "")
            if unit == "running":  # a running step's row (parallel runs): its elapsed time says enough
                return Text("running")
            if unit == "B":
                parts = [self.size.render(task), Text(" · "), self.speed.render(task)]
                if task.total:
                    parts += [Text(" · "), self.left.render(task), Text(" left")]
                return Text.assemble(*parts)
            total = "?" if task.total is None else f"{task.total:.0f}"
            return Text(f"{task.completed:.0f}/{total}{' ' + unit if unit else ''}")

    return [TextColumn("{task.description}", markup=False), BarColumn(), ByUnit(), TimeElapsedColumn()]


class RunProgress:
    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._overall: Any = None
        self._tasks: list[tuple[str | None, _RichTask]] = []  # (owning step, its bar)
        self._rows: dict[str, _RichTask] = {}  # parallel runs: one row per running step
        self._phase = 0
        self.console: Any = None

    def __enter__(self) -> RunProgress:
        global _live
        if self.enabled:
            from rich.progress import Progress

            self.console = _console()
            # No stdout/stderr redirection: rich's proxies read markup in a flushed partial line (a
            # prompt) and cannot see writes made through a stream captured earlier (the log's).
            self._progress = Progress(*_columns(), console=self.console, transient=False,
                                      redirect_stdout=False, redirect_stderr=False)
            self._progress.start()
            with _lock:
                _live = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _live
        with _lock:
            if _live is self:
                _live = None
        if self._progress is not None:
            self._progress.stop()

    def paused(self) -> Any:
        """Take the display off the screen (erased, not left as a copy) until the block ends."""
        import contextlib

        @contextlib.contextmanager
        def cm() -> Any:
            live = self._progress.live
            live.transient = True
            self._progress.stop()
            try:
                yield
            finally:
                live.transient = False
                # The erased display's height is remembered for the next draw, which would move up
                # over the prompt and wipe it: forget it (rich keeps it on its LiveRender).
                render = getattr(live, "_live_render", None)
                if render is not None and hasattr(render, "_shape"):
                    render._shape = None
                self._progress.start()

        return cm()

    def steps(self, total: int) -> None:
        if self._progress is not None:
            self._overall = self._progress.add_task("steps", total=total, unit="steps")

    def step_started(self, phase: int, index: int, total: int, step_id: str) -> None:
        if self._progress is not None and self._overall is not None:
            self._progress.update(self._overall, description=f"phase {phase} · step {index}/{total} · {step_id}")

    def step_finished(self) -> None:
        if self._progress is not None and self._overall is not None:
            self._progress.advance(self._overall, 1)
        with _lock:
            tasks, self._tasks = self._tasks, []
        for _, task in tasks:
            task.close()

    # -- parallel runs: every running step on its own row, its bars under it -----------------------
    def step_running(self, phase: int, step_id: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        row = _RichTask(self._progress, self._progress.add_task(f"▶ [{phase}] {step_id}", total=None, unit="running"))
        with _lock:
            self._rows[step_id] = row
            self._phase = phase
        self._overall_text()

    def step_ended(self, step_id: str) -> None:
        if self._progress is None:
            return
        if self._overall is not None:
            self._progress.advance(self._overall, 1)
        with _lock:
            row = self._rows.pop(step_id, None)
            mine = [t for owner, t in self._tasks if owner == step_id]
            self._tasks = [(owner, t) for owner, t in self._tasks if owner != step_id]
        for task in [*mine, *([row] if row else [])]:
            task.close()
        self._overall_text()

    def _overall_text(self) -> None:
        if self._overall is None:
            return
        with _lock:
            running = list(self._rows)
        self._progress.update(self._overall, description=f"phase {self._phase} · {len(running)} running: "
                              f"{', '.join(running)}" if running else f"phase {self._phase}")

    def task(self, description: str, total: float | None = None, unit: str = "",
             owner: str | None = None) -> _RichTask | _NullTask:
        if self._progress is None:
            return _NullTask()
        task = _RichTask(self._progress, self._progress.add_task(f"  {description}", total=total, unit=unit))
        with _lock:
            self._tasks.append((owner, task))
        return task
