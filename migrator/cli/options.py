"""The Typer app, its global options and the options the verbs share."""

# No `from __future__ import annotations`: Typer reads these annotations at registration time.
from pathlib import Path
from typing import Annotated

import typer

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

# --traceback, read by migrator.cli.main when an error ends the command.
settings = {"traceback": False}


@app.callback()
def main_options(
    log_format: Annotated[str, typer.Option("--log-format", help="auto, console or json")] = "auto",
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    traceback: Annotated[bool, typer.Option("--traceback", help="Show the stack of an error.")] = False,
) -> None:
    settings["traceback"] = traceback
    from migrator import logs  # structlog: not needed for --help

    logs.configure(log_format, log_level)
