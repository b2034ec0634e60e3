"""`migrate rehearse`: the Typer layer over migrator.commands.rehearse."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from migrator.cli.options import ParallelOpt
from migrator.commands import rehearse as rehearsal
from migrator.errors import InputError
from migrator.progress import say as progress_say


def register(app: typer.Typer) -> None:
    @app.command()
    def rehearse(
        kind: Annotated[str | None, typer.Option("--kind", help="Create a disposable kind cluster NAME and run "
                                                                "the phases against it.")] = None,
        keep: Annotated[bool, typer.Option("--keep", help="Keep the kind cluster afterwards.")] = False,
        runbook: Annotated[Path | None, typer.Option("--runbook", "-r", envvar="MIGRATE_RUNBOOK",
                                                     help="Default: runbooks/sandbox.yaml, or kind.yaml with --kind.")] = None,
        phase: Annotated[list[int] | None, typer.Option("--phase", "-p", help="Phase number; repeatable.")] = None,
        state_dir: Annotated[Path | None, typer.Option("--state-dir", envvar="MIGRATE_STATE_DIR")] = None,
        fresh: Annotated[bool, typer.Option("--fresh", help="Start over: sandbox torn down and rebuilt, "
                                                            "state and report forgotten.")] = False,
        parallel: ParallelOpt = None,
    ) -> None:
        """Rehearse the whole migration (phases 1-5) on the sandbox, or on a throwaway kind cluster."""
        if kind is not None and parallel is not None:
            raise InputError("rehearse: --parallel is for the sandbox; with --kind use `migrate run --parallel N`")
        if kind is None:
            if phase:
                raise InputError("rehearse: --phase is for --kind; on the sandbox use `migrate run --phase N`")
            rehearsal.rehearse(runbook or Path("runbooks/sandbox.yaml"), state_dir, fresh=fresh,
                               say=progress_say, parallel=parallel)
            return
        raise typer.Exit(rehearsal.rehearse_kind(kind, keep, runbook or Path(rehearsal.KIND_RUNBOOK), phase or []))
