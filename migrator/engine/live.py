"""The progress of the running steps' copies, for readers in other processes (`migrate serve`).

The terminal's bars live in this process only; the same figures (description, done, total, unit) go to
`<state>/<runbook>.progress.json`, per running step (a parallel run has several), rewritten atomically at
most once a second (and when a bar finishes or a step ends), so a copy of many GB costs one small write
a second. Descriptions are masked like every line migrate writes. Readers trust a step's bars only while
the state file says that step is running, and only when they were written after that attempt started.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from migrator import redact
from migrator.store.atomic import write_atomic

INTERVAL_S = 1.0


class LiveProgress:
    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._bars: dict[str, list[dict[str, Any]]] = {}  # step id -> its bars, in the order they began
        self._written = 0.0
        self._dirty = False
        self._flusher: threading.Thread | None = None

    def track(self, step_id: str, description: str, total: float | None, unit: str, task: Any) -> Tracked:
        bar = {"description": redact.redact(description), "completed": 0.0, "total": total, "unit": unit,
               "started_at": time.time()}
        with self._lock:
            self._bars.setdefault(step_id, []).append(bar)
        self.changed(force=True)
        return Tracked(self, bar, task)

    def step_ended(self, step_id: str) -> None:
        """The step's bars go (a retry or a later attempt starts with none)."""
        with self._lock:
            had = self._bars.pop(step_id, None) is not None
        if had:
            self.changed(force=True)

    def changed(self, force: bool = False) -> None:
        """Write now if a second has passed (or `force`); else leave it to the flusher, so the last
        figures before a copy stalls are written too."""
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._written < INTERVAL_S:
                self._dirty = True
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_later, name="live-progress", daemon=True)
                    self._flusher.start()
                return
        self._emit()

    def _flush_later(self) -> None:
        while True:
            time.sleep(INTERVAL_S)
            with self._lock:
                if not self._dirty:
                    self._flusher = None
                    return
            self._emit()

    def _emit(self) -> None:
        # One writer at a time, each with the figures of its moment: a newer file is never replaced by an older.
        with self._write_lock:
            with self._lock:
                self._written, self._dirty = time.monotonic(), False
                doc = {"updated_at": time.time(),
                       "steps": {sid: [dict(b) for b in bars] for sid, bars in self._bars.items()}}
            try:
                write_atomic(self.path, (json.dumps(doc) + "\n").encode(), mode=0o644)
            except Exception:  # noqa: BLE001 (a progress display must never fail the copy it shows)
                self.enabled = False


class Tracked:
    """A step's progress handle: forwards to the terminal's bar and records the figures."""

    def __init__(self, live: LiveProgress, bar: dict[str, Any], task: Any) -> None:
        self._live, self._bar, self._task = live, bar, task

    def advance(self, amount: float = 1) -> None:
        self._task.advance(amount)
        self._bar["completed"] += amount
        self._live.changed()

    def set_total(self, total: float | None) -> None:
        self._task.set_total(total)
        self._bar["total"] = total
        self._live.changed()

    def set_description(self, text: str) -> None:
        self._task.set_description(text)
        self._bar["description"] = redact.redact(text)
        self._live.changed()

    def close(self) -> None:
        close = getattr(self._task, "close", None)
        if callable(close):
            close()
        self._live.changed(force=True)


def read(path: Path) -> dict[str, Any] | None:
    """The last progress written, or None (no file, or one that cannot be parsed)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("steps"), dict) else None


def bars_of(doc: dict[str, Any] | None, step_id: str, started_at: float | None) -> list[dict[str, Any]]:
    """A running step's bars, each with the time its figures were written; none when they were written
    before this attempt of the step started (bars a crashed or earlier attempt left)."""
    if not doc or not started_at:
        return []
    updated_at = float(doc.get("updated_at") or 0)
    bars = doc["steps"].get(step_id)
    if updated_at < started_at or not isinstance(bars, list):
        return []
    return [{**b, "updated_at": updated_at} for b in bars if isinstance(b, dict)]
