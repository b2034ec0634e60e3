"""`migrate run | resume | plan | rollback`: the verbs that change the world (or say how they would)."""

# No `from __future__ import annotations`: Typer reads these annotations at registration time.
from pathlib import Path
from typing import Annotated

import typer

from migrator.cli.options import (
    DEFAULT_RUNBOOK,
    ApproveOpt,
    ParallelOpt,
    PhaseOpt,
    RunbookOpt,
    StateDirOpt,
    StepOpt,
    YesOpt,
)
from migrator.commands import plan as plan_cmd
from migrator.commands import resume as resume_cmd
from migrator.commands import rollback as rollback_cmd
from migrator.commands import run as run_cmd


def run(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None, phase: PhaseOpt = None,
        step: StepOpt = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only; change nothing.")] = False,
        yes: YesOpt = False, approve: ApproveOpt = None,
        accept_changes: Annotated[bool, typer.Option("--accept-changes")] = False,
        parallel: ParallelOpt = None) -> None:
    """Run the phases (all by default), skipping the steps already done."""
    run_cmd.run(runbook, state_dir, phase or [], step or [], dry_run, yes, accept_changes, approve or [],
                parallel=parallel)


def resume(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None,
           yes: YesOpt = False, approve: ApproveOpt = None,
           accept_changes: Annotated[bool, typer.Option("--accept-changes")] = False,
           parallel: ParallelOpt = None) -> None:
    """Continue the last run where it stopped (crash, Ctrl-C, failure)."""
    resume_cmd.resume(runbook, state_dir, yes, accept_changes, approve or [], parallel=parallel)


def plan(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None, phase: PhaseOpt = None,
         step: StepOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The dry run: what `run` would change, and what it cannot predict. Exit 4 when a step cannot be planned."""
    code = plan_cmd.exit_code(plan_cmd.plan(runbook, state_dir, phase or [], step or [], as_json))
    if code:
        raise typer.Exit(code)


def rollback(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None,
             step: Annotated[str | None, typer.Option("--step", "-s")] = None,
             phase: Annotated[int | None, typer.Option("--phase", "-p")] = None,
             cascade: Annotated[bool, typer.Option("--cascade", help="Also roll back what depends on it.")] = False,
             everything: Annotated[bool, typer.Option("--all", help="Every applied step, last first.")] = False,
             dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
             yes: YesOpt = False) -> None:
    """Undo one step, a whole phase, or everything, from what the steps recorded."""
    rollback_cmd.rollback(runbook, state_dir, step, phase, cascade, dry_run, yes, everything)


def register(app: typer.Typer) -> None:
    for verb in (run, resume, plan, rollback):
        app.command()(verb)
