"""`migrate plan`: the dry run, as text or JSON, and whether it is complete."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from migrator import errors, redact
from migrator.commands.common import engine_for
from migrator.commands.coverage import coverage_gate


def plan(runbook: Path, state_dir: Path | None, phases: list[int], steps: list[str], as_json: bool) -> list[dict[str, Any]]:
    engine = engine_for(runbook, state_dir, dry_run=True, say=(lambda _t: None) if as_json else None)
    coverage_gate(engine.runbook, say=lambda t: print(t, file=sys.stderr))
    result: list[dict[str, Any]] = engine.plan(phases or None, steps or None)
    unplanned = incomplete(result)
    if as_json:
        print(json.dumps({"runbook": engine.runbook.name, "plan": result, "complete": not unplanned,
                          "cannot_plan": unplanned}, indent=2))
    elif unplanned:
        print(redact.redact(summary(unplanned, len(result))), file=sys.stderr)
    return result


def incomplete(result: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The steps the dry run could not plan, with why."""
    return [{"id": e["id"], "why": str(e.get("error") or "")} for e in result if e.get("action") == "cannot plan"]


def summary(unplanned: list[dict[str, str]], total: int) -> str:
    steps = "; ".join(f"{u['id']}: {u['why']}" for u in unplanned)
    return f"PLAN INCOMPLETE: {len(unplanned)} of {total} steps cannot be planned: {steps}"


def exit_code(result: list[dict[str, Any]]) -> int:
    """0 when every selected step was planned, EXIT_PLAN_INCOMPLETE (4) when one or more could not be."""
    return errors.EXIT_PLAN_INCOMPLETE if incomplete(result) else errors.EXIT_OK
