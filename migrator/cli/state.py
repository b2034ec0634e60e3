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
           as_json: Annotated[bool, typer.Option("--json")] = False,
           watch: Annotated[bool, typer.Option("--watch", "-w", help="Redraw every --interval seconds, with the "
                                               "running step and the journal's tail, until Ctrl-C.")] = False,
           interval: Annotated[float, typer.Option("--interval", min=0.2, help="Seconds between redraws.")] = 2.0,
           count: Annotated[int | None, typer.Option("--count", min=1, help="Stop after N redraws.")] = None) -> None:
    """Every step's status, grouped by phase."""
    if watch:
        if as_json:
            raise errors.InputError("status: --watch draws for a person; use --json without it")
        status_cmd.watch(runbook, state_dir, interval, count)
        return
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
