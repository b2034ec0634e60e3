"""`migrate resume`: continue the last run where it stopped."""

from __future__ import annotations

from pathlib import Path

from migrator.commands.common import engine_for, guard_production


def resume(runbook: Path, state_dir: Path | None, yes: bool, accept_changes: bool,
           approve: list[str] | None = None, parallel: int | None = None) -> int:
    engine = engine_for(runbook, state_dir, yes=yes, accept_changes=accept_changes, approve=approve,
                        parallel=parallel)
    guard_production(engine, yes, "resume")
    return int(engine.resume())
