"""`migrate serve`: the read-only web page of a run."""

# No `from __future__ import annotations`: Typer reads these annotations at registration time.
from pathlib import Path
from typing import Annotated

import typer

from migrator.cli.options import DEFAULT_RUNBOOK, RunbookOpt, StateDirOpt
from migrator.commands import serve as serve_cmd


def serve(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None,
          host: Annotated[str, typer.Option("--host", help="A loopback address to bind (127.0.0.1, ::1, "
                                            "localhost); anything else is refused.")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                            help="TCP port; 0 picks a free one (the URL is printed).")] = 8765) -> None:
    """A read-only local web page of the run (steps, timeline, journal), live, until Ctrl-C."""
    serve_cmd.serve(runbook, state_dir, host, port)


def register(app: typer.Typer) -> None:
    app.command()(serve)
