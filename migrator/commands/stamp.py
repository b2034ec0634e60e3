"""`migrate stamp`: mark a step's status by hand (journaled)."""

from __future__ import annotations

from pathlib import Path

from migrator.commands.common import engine_for


def stamp(runbook: Path, state_dir: Path | None, step: str, status_: str) -> None:
    engine = engine_for(runbook, state_dir, check_secrets=False)
    engine.stamp(step, status_)
    print(f"stamped {step} as {status_}")
