"""The `migrate` command line: a thin Typer layer over migrator.commands, one module per verb group,
registered here explicitly; `main()` turns every error into one line and its exit code.

Heavy libraries (kubernetes, docker, paramiko, psycopg, hvac) are imported only by the adapters, when
first used (adapters/lazy.py), never here; and the verb modules that need the engine or the sandbox
import them inside the function that runs, so `migrate --help` and completion start fast.
"""

from __future__ import annotations

import os
import sys
import traceback

from migrator import errors, redact
from migrator.cli import inspect, rehearse, render, run, sandbox, serve, state
from migrator.cli.options import GLOBAL_FLAGS, GLOBAL_VALUED, app, settings

# In `migrate --help` order.
for verbs in (run, state, serve, sandbox, inspect, rehearse, render):
    verbs.register(app)


def main() -> None:
    try:
        # Non-standalone mode returns the code of a typer.Exit (and Typer turns a KeyboardInterrupt inside
        # a command into Exit(130)) instead of exiting: dropping it made a Ctrl-C or a failed
        # `rehearse --kind` exit 0.
        returned = app(args=hoist_global_options(sys.argv[1:]), prog_name="migrate", standalone_mode=False)
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
        if exc.__class__.__name__ == "Abort":
            sys.exit(errors.EXIT_INTERRUPTED)
        if isinstance(exc.__cause__, KeyboardInterrupt):
            # A Ctrl-C while a class is being created (pydantic's __set_name__, as a module is imported)
            # arrives wrapped in a RuntimeError: still an interruption, not an internal error.
            print("FAILED: interrupted", file=sys.stderr)
            sys.exit(errors.EXIT_INTERRUPTED)
        if isinstance(exc, _click_exceptions()):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(errors.EXIT_BAD_INPUT)
        print(f"FAILED: internal error: {exc.__class__.__name__}: {_redact(str(exc))} "
              "(run with --traceback for the stack)", file=sys.stderr)
        _maybe_traceback()
        sys.exit(errors.EXIT_FAILED)
    code = returned if isinstance(returned, int) and not isinstance(returned, bool) else errors.EXIT_OK
    if code == errors.EXIT_INTERRUPTED:
        print("FAILED: interrupted", file=sys.stderr)
    sys.exit(code)


def hoist_global_options(argv: list[str]) -> list[str]:
    """`migrate run --log-level debug` as `migrate --log-level debug run`: the global options found
    after the verb are moved in front of it (Click reads a group's options only there). Their values
    are checked by Click as usual; nothing after `--` is touched."""
    verb = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in GLOBAL_VALUED:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            verb = i
            break
    if verb is None:
        return list(argv)
    moved: list[str] = []
    kept: list[str] = []
    rest = argv[verb + 1:]
    j = 0
    while j < len(rest):
        arg = rest[j]
        if arg == "--":
            kept += rest[j:]
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_VALUED:
            take = 1 if "=" in arg else 2
            moved += rest[j:j + take]
            j += take
        elif arg in GLOBAL_FLAGS:
            moved.append(arg)
            j += 1
        else:
            kept.append(arg)
            j += 1
    return [*argv[:verb], *moved, argv[verb], *kept]


def _click_exceptions() -> tuple[type[Exception], ...]:
    """ClickException of the click Typer uses: its vendored copy (typer >= 0.20), and the separate
    package when installed too (then both exist, and only checking one made bad options exit 1)."""
    found: list[type[Exception]] = []
    try:
        from typer import _click  # type: ignore[attr-defined]

        found.append(_click.exceptions.ClickException)
    except ImportError:
        pass
    try:
        import click

        found.append(click.exceptions.ClickException)
    except ModuleNotFoundError:
        pass
    return tuple(found)


def _redact(text: str) -> str:
    return redact.redact(text)


def _maybe_traceback() -> None:
    if settings["traceback"] or os.environ.get("MIGRATE_TRACEBACK"):
        print(_redact(traceback.format_exc()), file=sys.stderr, end="")
