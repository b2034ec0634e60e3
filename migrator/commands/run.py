"""`migrate run`: the phases (all by default), skipping the steps already done."""

from __future__ import annotations

from pathlib import Path

from migrator.commands.common import engine_for, guard_production


def run(runbook: Path, state_dir: Path | None, phases: list[int], steps: list[str], dry_run: bool, yes: bool,
        accept_changes: bool, approve: list[str] | None = None, parallel: int | None = None) -> int:
    engine = engine_for(runbook, state_dir, dry_run=dry_run, yes=yes, accept_changes=accept_changes,
                        approve=approve, parallel=parallel)
    guard_production(engine, yes, "run")
    return int(engine.run(phases or None, steps or None))
