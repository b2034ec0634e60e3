"""The `migrate` console script: the CLI imported inside a guard, so a Ctrl-C while Typer and the CLI
modules are still being imported exits 130 with one line, like a Ctrl-C at any later moment."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # errors.EXIT_INTERRUPTED; not imported here so that nothing runs unguarded


def main() -> None:
    try:
        from migrator.cli.main import main as cli_main
    except KeyboardInterrupt:
        print("FAILED: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    cli_main()
