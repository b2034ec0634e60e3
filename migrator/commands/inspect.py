"""`migrate inspect`: the inventory of the VPS (collected by migrator.adapters.inventory), kept in
the state file's `extra["source_inventory"]`, under the run lock."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from migrator.adapters.inventory import STATE_KEY, collect, diff, render
from migrator.adapters.resources import DOCKER_SOURCE
from migrator.commands.common import engine_for
from migrator.commands.coverage import coverage_gate
from migrator.errors import InputError


def inspect(runbook_path: Path, state_dir: Path | None, *, as_json: bool = False, show_diff: bool = False,
            say: Any = print) -> dict[str, Any]:
    """Collect the inventory; store it in the state (or, with show_diff, compare with the stored one)."""
    from migrator.adapters.docker import DockerRemote

    engine = engine_for(runbook_path, state_dir, check_secrets=False)
    source = engine.runbook.environment.source
    if source is None:
        raise InputError(f"{runbook_path}: no environment.source (the VPS): nothing to inspect")
    session = engine.session
    with session.locked("inspect"):
        dr = session.resource(DOCKER_SOURCE, lambda: DockerRemote.from_config(source, engine.runbook.dir))
        inv = collect(dr, source.compose_project)
        previous = session.state.extra.get(STATE_KEY)
        changes = diff(previous, inv) if (show_diff and previous) else []
        if not show_diff:
            session.state.extra[STATE_KEY] = inv
            session.save()
    if as_json:
        say(json.dumps({"inventory": inv, "diff": changes} if show_diff else inv, indent=2, default=str))
    elif show_diff:
        if previous is None:
            say("no stored inventory to compare with: run `migrate inspect` first")
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(previous.get("collected_at", 0)))
            say(f"changes since the inventory of {when}:" if changes else f"no change since the inventory of {when}")
            for line in changes:
                say(f"  {line}")
    else:
        say(render(inv))
    coverage_gate(engine.runbook, inv, say=(lambda t: print(t, file=sys.stderr)) if as_json else say)
    return {"inventory": inv, "diff": changes}
