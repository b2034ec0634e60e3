"""`migrate plan`: the dry run, as text or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from migrator.commands.common import engine_for


def plan(runbook: Path, state_dir: Path | None, phases: list[int], steps: list[str], as_json: bool) -> list[dict[str, Any]]:
    engine = engine_for(runbook, state_dir, dry_run=True, say=(lambda _t: None) if as_json else None)
    result: list[dict[str, Any]] = engine.plan(phases or None, steps or None)
    if as_json:
        print(json.dumps({"runbook": engine.runbook.name, "plan": result}, indent=2))
    return result
