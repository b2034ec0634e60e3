"""Failpoints for testing resume: MIGRATE_FAILPOINTS="STEP:WHEN=ACTION,..."

WHEN is one of before-apply, after-apply, before-verify, after-verify, or a point a step declares itself
(`ctx.failpoint("after-table")`), optionally `@N` to fire on the N-th time that point is reached.
ACTION is `crash` (the process SIGKILLs itself: no cleanup, no state write, like a power cut),
`error` (a permanent error) or `temp-error*N` (a temporary error, N times).
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections import Counter
from dataclasses import dataclass

from migrator.errors import InputError, PermanentError, TemporaryError

STANDARD = ("before-apply", "after-apply", "before-verify", "after-verify")
_SPEC = re.compile(r"^(?P<step>[a-z0-9-]+):(?P<when>[a-z0-9-]+)(?:@(?P<nth>\d+))?=(?P<action>crash|error|temp-error(?:\*\d+)?)$")


@dataclass
class Failpoint:
    step: str
    when: str
    nth: int | None
    action: str
    remaining: int = 1


def parse(text: str) -> list[Failpoint]:
    points = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        m = _SPEC.match(item)
        if not m:
            raise InputError(
                f"MIGRATE_FAILPOINTS: {item!r}: expected STEP:WHEN[@N]=ACTION with ACTION crash, error or temp-error*N"
            )
        action = m.group("action")
        times = int(action.split("*")[1]) if action.startswith("temp-error*") else 1
        points.append(Failpoint(m.group("step"), m.group("when"), int(m.group("nth")) if m.group("nth") else None,
                                "temp-error" if action.startswith("temp-error") else action, times))
    return points


class Failpoints:
    def __init__(self, text: str | None = None) -> None:
        self.points = parse(text if text is not None else os.environ.get("MIGRATE_FAILPOINTS", ""))
        self.hits: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()  # steps of a parallel run hit points from their threads

    def hit(self, step: str, when: str) -> None:
        if not self.points:
            return
        with self._lock:
            fired = self._fire(step, when)
        if fired is None:
            return
        if fired.action == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if fired.action == "error":
            raise PermanentError(f"failpoint {step}:{when} (error)")
        raise TemporaryError(f"failpoint {step}:{when} (temporary error)", delay=0.05)

    def _fire(self, step: str, when: str) -> Failpoint | None:
        self.hits[(step, when)] += 1
        for fp in self.points:
            if fp.step != step or fp.when != when or fp.remaining <= 0:
                continue
            if fp.nth is not None and self.hits[(step, when)] != fp.nth:
                continue
            fp.remaining -= 1
            return fp
        return None
