"""`migrate render`: the Helm charts and ArgoCD Applications of the GitOps handover."""

# No `from __future__ import annotations`: Typer reads these annotations at registration time.
from pathlib import Path
from typing import Annotated

import typer

from migrator.cli.options import DEFAULT_RUNBOOK


def render(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for charts/ and argocd/ (each replaced whole).")],
    runbook: Annotated[list[Path] | None, typer.Option(
        "--runbook", "-r", help="A runbook whose values-<name>.yaml (and Applications) to write; repeatable. "
                                f"Default: {DEFAULT_RUNBOOK}.")] = None,
) -> None:
    """The five Helm charts and the ArgoCD Applications, from the manifests the migration applies;
    linted and rendered with the real Helm engine and compared with the migration's objects."""
    from migrator.commands import render as render_cmd

    render_cmd.render(runbook or [Path(DEFAULT_RUNBOOK)], out)


def register(app: typer.Typer) -> None:
    app.command()(render)
