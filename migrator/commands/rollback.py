"""`migrate rollback`: undo one step, a phase or everything, from the recorded facts."""

from __future__ import annotations

from pathlib import Path

from migrator.commands.common import engine_for, guard_production
from migrator.errors import InputError


def rollback(runbook: Path, state_dir: Path | None, step: str | None, phase: int | None, cascade: bool,
             dry_run: bool, yes: bool, everything: bool = False) -> int:
    if sum((step is not None, phase is not None, everything)) != 1:
        raise InputError("rollback: give exactly one of --step ID, --phase N or --all")
    engine = engine_for(runbook, state_dir, dry_run=dry_run, yes=yes)
    guard_production(engine, yes, "roll back")
    return int(engine.rollback(step, phase, cascade, everything))
