"""`migrate status | stamp | unlock`: reading and mending the state file and the lock."""

# No `from __future__ import annotations`: Typer reads these annotations at registration time.
from pathlib import Path
from typing import Annotated

import typer

from migrator import errors
from migrator.cli.options import DEFAULT_RUNBOOK, RunbookOpt, StateDirOpt
from migrator.commands import stamp as stamp_cmd
from migrator.commands import status as status_cmd
from migrator.commands import unlock as unlock_cmd


def status(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every step's status, grouped by phase."""
    status_cmd.status(runbook, state_dir, as_json)


def stamp(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None,
          step: Annotated[str, typer.Option("--step", "-s")] = "",
          status_: Annotated[str, typer.Option("--status")] = "") -> None:
    """Mark a step's status by hand (journaled)."""
    if not step or not status_:
        raise errors.InputError("stamp: --step and --status are required")
    stamp_cmd.stamp(runbook, state_dir, step, status_)


def unlock(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None) -> None:
    """Remove a lock left behind, when no migrate process holds it."""
    print(unlock_cmd.unlock(runbook, state_dir))


def register(app: typer.Typer) -> None:
    for verb in (status, stamp, unlock):
        app.command()(verb)
