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

    def init(name: Annotated[str, typer.Argument(help="The new environment's runbook name.")],
             inventory: Annotated[Path | None, typer.Option("--inventory", help="The JSON `migrate inspect "
                                                            "--json` printed for its VPS.")] = None,
             from_runbook: Annotated[str | None, typer.Option("--from", help="Copy this runbook instead (e.g. "
                                                              "builtin:runbooks/examples/local.yaml).")] = None,
             directory: Annotated[Path, typer.Option("--dir", help="Where to write NAME.yaml.")] = Path(".")) -> None:
        """Write a runbook for a new environment: from its VPS's inventory, or a copy of another runbook."""
        from migrator.commands import init as init_cmd

        print(f"wrote {init_cmd.init(name, directory, inventory, from_runbook)}")

    app.command("init")(init)
