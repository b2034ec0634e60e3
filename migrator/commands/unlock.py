"""`migrate unlock`: remove a lock left behind, when no migrate process holds it."""

from __future__ import annotations

from pathlib import Path

from migrator.commands.common import engine_for
from migrator.errors import RefusedError


def unlock(runbook: Path, state_dir: Path | None) -> str:
    engine = engine_for(runbook, state_dir, check_secrets=False)
    lock = engine.session.lock
    # break_stale takes the lock itself (non-blocking) before it removes anything: no check-then-unlink race.
    outcome, who = lock.break_stale()
    if outcome == "held":
        raise RefusedError(f"{lock.path}: held by a running process ({lock.describe_holder_liveness()}); "
                           "stop it instead of unlocking")
    if outcome == "absent":
        return "no lock file"
    engine.session.journal.append("unlocked", previous=who)
    return f"removed {lock.path}" + (f" (left by pid {who.get('pid')})" if who else "")
