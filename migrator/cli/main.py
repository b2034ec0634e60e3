"""The `migrate` command line: a thin Typer layer over migrator.commands.

Heavy libraries (kubernetes, docker, paramiko, psycopg, hvac) are imported only by the steps and
adapters that need them, never here, so `migrate --help` and `migrate status` start fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from migrator import errors

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Move the Sevensa platform from Docker Compose to Kubernetes in resumable, health-gated steps.")

# The default can never point at production: the sandbox runbook, unless told otherwise.
DEFAULT_RUNBOOK = "runbooks/sandbox.yaml"

RunbookOpt = Annotated[Path, typer.Option("--runbook", "-r", envvar="MIGRATE_RUNBOOK",
                                          help="The runbook file.", show_default=True)]
StateDirOpt = Annotated[Path | None, typer.Option("--state-dir", envvar="MIGRATE_STATE_DIR",
                                                  help="Where state, journal and lock live (default: ./state).")]
PhaseOpt = Annotated[list[int] | None, typer.Option("--phase", "-p", help="Phase number; repeatable.")]
StepOpt = Annotated[list[str] | None, typer.Option("--step", "-s", help="Step id; repeatable.")]

_traceback = False


@app.callback()
def main_options(
    log_format: Annotated[str, typer.Option("--log-format", help="auto, console or json")] = "auto",
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    traceback: Annotated[bool, typer.Option("--traceback", help="Show the stack of an error.")] = False,
) -> None:
    global _traceback
    _traceback = traceback
    from migrator import logs

    logs.configure(log_format, log_level)


@app.command()
def run(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None, phase: PhaseOpt = None,
        step: StepOpt = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only; change nothing.")] = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve every approval gate.")] = False,
        accept_changes: Annotated[bool, typer.Option("--accept-changes")] = False) -> None:
    """Run the phases (all by default), skipping the steps already done."""
    from migrator import commands

    commands.run(runbook, state_dir, phase or [], step or [], dry_run, yes, accept_changes)


@app.command()
def resume(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None,
           yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
           accept_changes: Annotated[bool, typer.Option("--accept-changes")] = False) -> None:
    """Continue the last run where it stopped (crash, Ctrl-C, failure)."""
    from migrator import commands

    commands.resume(runbook, state_dir, yes, accept_changes)


@app.command()
def plan(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None, phase: PhaseOpt = None,
         step: StepOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The dry run: what `run` would change, and what it cannot predict."""
    from migrator import commands

    commands.plan(runbook, state_dir, phase or [], step or [], as_json)


@app.command()
def rollback(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None,
             step: Annotated[str | None, typer.Option("--step", "-s")] = None,
             phase: Annotated[int | None, typer.Option("--phase", "-p")] = None,
             cascade: Annotated[bool, typer.Option("--cascade", help="Also roll back what depends on it.")] = False,
             everything: Annotated[bool, typer.Option("--all", help="Every applied step, last first.")] = False,
             dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
             yes: Annotated[bool, typer.Option("--yes", "-y")] = False) -> None:
    """Undo one step, a whole phase, or everything, from what the steps recorded."""
    from migrator import commands

    commands.rollback(runbook, state_dir, step, phase, cascade, dry_run, yes, everything)


@app.command()
def status(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every step's status, grouped by phase."""
    from migrator import commands

    commands.status(runbook, state_dir, as_json)


@app.command()
def stamp(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None,
          step: Annotated[str, typer.Option("--step", "-s")] = "",
          status_: Annotated[str, typer.Option("--status")] = "") -> None:
    """Mark a step's status by hand (journaled)."""
    from migrator import commands

    if not step or not status_:
        raise errors.InputError("stamp: --step and --status are required")
    commands.stamp(runbook, state_dir, step, status_)


@app.command()
def unlock(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None) -> None:
    """Remove a lock left behind, when no migrate process holds it."""
    from migrator import commands

    print(commands.unlock(runbook, state_dir))


def _register_extensions() -> None:
    """Verb groups that live in their own modules (sandbox, inspect, rehearse)."""
    import importlib

    for module in ("migrator.cli_sandbox", "migrator.cli_inspect", "migrator.cli_rehearse"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        mod.register(app)


def main() -> None:
    try:
        _register_extensions()
        # Non-standalone mode returns the code of a typer.Exit (and Typer turns a KeyboardInterrupt inside
        # a command into Exit(130)) instead of exiting: dropping it made a Ctrl-C or a failed
        # `rehearse --kind` exit 0.
        returned = app(standalone_mode=False)
    except errors.InputError as exc:
        for problem in exc.problems:
            # Compiler-style: one `FILE:LINE: field: problem` line each, nothing else.
            print(_redact(problem), file=sys.stderr)
        _maybe_traceback()
        sys.exit(exc.exit_code)
    except errors.MigratorError as exc:
        print(f"FAILED: {_redact(str(exc))}", file=sys.stderr)
        _maybe_traceback()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("FAILED: interrupted", file=sys.stderr)
        sys.exit(errors.EXIT_INTERRUPTED)
    except Exception as exc:
        try:
            import click
        except ModuleNotFoundError:  # typer >= 0.20 vendors click
            from typer import _click as click  # type: ignore[no-redef]

        if exc.__class__.__name__ == "Abort":
            sys.exit(errors.EXIT_INTERRUPTED)
        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(errors.EXIT_BAD_INPUT)
        print(f"FAILED: internal error: {exc.__class__.__name__}: {_redact(str(exc))} "
              "(run with --traceback for the stack)", file=sys.stderr)
        _maybe_traceback()
        sys.exit(errors.EXIT_FAILED)
    code = returned if isinstance(returned, int) and not isinstance(returned, bool) else errors.EXIT_OK
    if code == errors.EXIT_INTERRUPTED:
        print("FAILED: interrupted", file=sys.stderr)
    sys.exit(code)


def _redact(text: str) -> str:
    from migrator import redact

    return redact.redact(text)


def _maybe_traceback() -> None:
    if _traceback or os.environ.get("MIGRATE_TRACEBACK"):
        import traceback

        print(_redact(traceback.format_exc()), file=sys.stderr, end="")
