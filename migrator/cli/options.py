"""The Typer app, its global options and the options the verbs share."""

# No `from __future__ import annotations`: Typer reads these annotations at registration time.
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

# Shell completion on: `migrate --install-completion` (bash, zsh, fish), or --show-completion.
app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Move the Sevensa platform from Docker Compose to Kubernetes in resumable, health-gated steps.")

# The default can never point at production: the sandbox runbook, unless told otherwise.
DEFAULT_RUNBOOK = "runbooks/sandbox.yaml"

RunbookOpt = Annotated[Path, typer.Option("--runbook", "-r", envvar="MIGRATE_RUNBOOK",
                                          help="The runbook file.", show_default=True)]
StateDirOpt = Annotated[Path | None, typer.Option("--state-dir", envvar="MIGRATE_STATE_DIR",
                                                  help="Where state, journal and lock live (default: ./state).")]
PhaseOpt = Annotated[list[int] | None, typer.Option("--phase", "-p", help="Phase number; repeatable.")]
StepOpt = Annotated[list[str] | None, typer.Option("--step", "-s", help="Step id; repeatable.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Confirm a production runbook without typing its name "
                                      "(approval gates are not answered by it: see --approve).")]
ApproveOpt = Annotated[list[str] | None, typer.Option("--approve", metavar="STEP",
                                                      help="Answer yes to this approval gate; repeatable.")]

ParallelOpt = Annotated[int | None, typer.Option("--parallel", min=1, max=32, metavar="N",
                                                 help="Run up to N steps at once where their `needs` allow "
                                                      "(default: the runbook's `parallel:`, else 1).")]

# --traceback, read by migrator.cli.main when an error ends the command.
settings = {"traceback": False}

# The global options, accepted after the verb as well (migrator.cli.main moves them in front of it).
GLOBAL_FLAGS = ("--traceback",)
GLOBAL_VALUED = ("--log-format", "--log-level")


class LogFormat(StrEnum):
    auto = "auto"
    console = "console"
    json = "json"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version  # --version only: not for --help

        try:
            print(f"migrate {version(DISTRIBUTION)}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            print("migrate (not installed: no version)")
        raise typer.Exit()


DISTRIBUTION = "sevensa-migrator"


@app.callback()
def main_options(
    log_format: Annotated[LogFormat, typer.Option("--log-format", case_sensitive=False,
                                                  help="Logs on stderr: readable, or JSON lines (auto: JSON "
                                                       "unless stderr is a terminal).")] = LogFormat.auto,
    log_level: Annotated[LogLevel, typer.Option("--log-level", case_sensitive=False)] = LogLevel.info,
    traceback: Annotated[bool, typer.Option("--traceback", help="Show the stack of an error.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Global options may also come after the verb: `migrate run --log-level debug`."""
    settings["traceback"] = traceback
    from migrator import logs  # structlog: not needed for --help

    logs.configure(log_format.value, log_level.value)
