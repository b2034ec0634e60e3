"""Progress display with rich: phase and step counters, the running step, elapsed time, transfers.

Silent when stderr is not a terminal (CI, pipes, cron): logs carry the same information.
"""

from __future__ import annotations

import sys
from typing import Any


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


class RunProgress:
    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._overall: Any = None
        self._tasks: list[_RichTask] = []

    def __enter__(self) -> RunProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total}"),
                TimeElapsedColumn(),
                console=Console(stderr=True), transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def steps(self, total: int) -> None:
        if self._progress is not None:
            self._overall = self._progress.add_task("steps", total=total)

    def step_started(self, phase: int, index: int, total: int, step_id: str) -> None:
        if self._progress is not None and self._overall is not None:
            self._progress.update(self._overall, description=f"phase {phase} · step {index}/{total} · {step_id}")

    def step_finished(self) -> None:
        if self._progress is not None and self._overall is not None:
            self._progress.advance(self._overall, 1)
        for task in self._tasks:
            task.close()
        self._tasks.clear()

    def task(self, description: str, total: float | None = None, unit: str = "") -> _RichTask | _NullTask:
        if self._progress is None:
            return _NullTask()
        task = _RichTask(self._progress, self._progress.add_task(f"  {description} {unit}".rstrip(), total=total))
        self._tasks.append(task)
        return task
