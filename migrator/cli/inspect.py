"""`migrate inspect`: the inventory of the VPS (migrator.commands.inspect; the collection is migrator.adapters.inventory)."""

# No `from __future__ import annotations`: Typer reads these annotations at registration time.
from pathlib import Path
from typing import Annotated

import typer

from migrator.cli.options import DEFAULT_RUNBOOK, RunbookOpt, StateDirOpt
from migrator.commands import inspect as inspect_cmd_mod


def register(app: typer.Typer) -> None:
    def inspect_cmd(runbook: RunbookOpt = Path(DEFAULT_RUNBOOK), state_dir: StateDirOpt = None,
                    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
                    diff: Annotated[bool, typer.Option("--diff", help="Compare with the stored inventory "
                                                       "(which is left as it is).")] = False) -> None:
        """Inventory of the VPS: compose services, containers, volumes, databases (env NAMES only)."""
        inspect_cmd_mod.inspect(runbook, state_dir, as_json=as_json, show_diff=diff)

    app.command("inspect")(inspect_cmd)
