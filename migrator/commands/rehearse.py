"""`migrate rehearse`: the whole migration, phases 1 to 5, against the local sandbox, with a report."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrator import commands, report

Say = Callable[[str], None]


def reset_state(state_dir: Path, runbook_name: str) -> None:
    """Forget an earlier rehearsal: its state, journal and report (the lock is left to its owner)."""
    for suffix in (".state.json", ".journal.jsonl", ".report.json", ".report.md"):
        (state_dir / f"{runbook_name}{suffix}").unlink(missing_ok=True)
    backups = state_dir / "backups"
    if backups.is_dir():
        for item in backups.iterdir():
            if item.is_file():
                item.unlink()


def ensure_sandbox(sandbox_dir: Path | None, fresh: bool, say: Say) -> None:
    from migrator.sandbox import platform

    if fresh:
        say("sandbox: tearing down for a fresh rehearsal")
        platform.down(sandbox_dir, log=say)
    if not platform.status(sandbox_dir).up:
        say("sandbox: bringing it up")
        platform.up(sandbox_dir, log=say)


def rehearse(runbook_path: Path, state_dir: Path | None, *, fresh: bool = False, sandbox_dir: Path | None = None,
             with_sandbox: bool = True, say: Say = print) -> dict[str, Any]:
    """Run every phase (resuming an interrupted rehearsal unless `fresh`), then write the report."""
    # Secrets are files the sandbox writes: check them only once it is up.
    runbook = commands.load(runbook_path, check_secrets=False)
    sdir = commands.state_dir_for(runbook, state_dir)
    if fresh:
        reset_state(sdir, runbook.name)
    if with_sandbox:
        ensure_sandbox(sandbox_dir, fresh, say)
    engine = commands.engine_for(runbook_path, sdir, yes=True, say=say)
    started = time.time()
    error: BaseException | None = None
    try:
        engine.run(command="rehearse")
    except BaseException as exc:  # the report is written whatever happened, then the error goes on
        error = exc
    data = report.build(engine.runbook, engine.session.store.load(runbook.name, str(runbook.path)),
                        engine.session.journal, since=None)
    data["wall_s"] = round(time.time() - started, 3)
    json_path, md_path = report.write(data, sdir)
    say(report.summary(data))
    say(f"report: {json_path} and {md_path}")
    if error is not None:
        raise error
    return data
