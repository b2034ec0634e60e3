"""`migrate sandbox up | down | status`: the local Sevensa platform in miniature (see migrator/sandbox)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

DirOpt = Annotated[Path | None, typer.Option("--dir", help="Where the sandbox lives (default: state/sandbox).")]


def register(app: typer.Typer) -> None:
    sandbox = typer.Typer(help="The local sandbox platform: real dockerd, sshd, Postgres, OpenBao, BIND, and the "
                               "Kubernetes API stand-in.", no_args_is_help=True)

    @sandbox.command()
    def up(dir: DirOpt = None,
           scale: Annotated[int, typer.Option("--scale", help="Multiplies the seeded data (1 = a few MB).")] = 1) -> None:
        """Start everything (idempotent) and print what runs where."""
        from migrator.sandbox import platform

        started = time.monotonic()
        info = platform.up(dir, scale=scale, log=lambda line: print(line, flush=True))
        print(info.to_json())
        print(f"sandbox up in {time.monotonic() - started:.1f}s")

    @sandbox.command()
    def down(dir: DirOpt = None) -> None:
        """Stop every process, remove containers, volumes, networks and files (idempotent)."""
        from migrator.sandbox import platform

        started = time.monotonic()
        platform.down(dir, log=lambda line: print(line, flush=True))
        print(f"sandbox down in {time.monotonic() - started:.1f}s")

    @sandbox.command()
    def status(dir: DirOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """What runs, and where (with --json: for scripts)."""
        from migrator.sandbox import platform

        info = platform.status(dir)
        print(info.to_json() if as_json else info.describe() if hasattr(info, "describe") else info.to_json())

    app.add_typer(sandbox, name="sandbox")
