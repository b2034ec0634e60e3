"""`migrate status`: every step's status, grouped by phase."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from migrator.commands.common import engine_for


def status(runbook: Path, state_dir: Path | None, as_json: bool) -> dict[str, Any]:
    engine = engine_for(runbook, state_dir, check_secrets=False)
    data: dict[str, Any] = engine.status()
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        print(render_status(data))
    return data


def render_status(data: dict[str, Any]) -> str:
    lines = [f"runbook {data['runbook']} ({data['runbook_path']})", f"state   {data['state_file']}  lock: {data['lock']}"]
    if data.get("runbook_changed"):
        lines.append("note    the runbook changed since the last run")
    phase = None
    width = max((len(s["id"]) for s in data["steps"]), default=10)
    for s in data["steps"]:
        if s["phase"] != phase:
            phase = s["phase"]
            lines.append(f"\nphase {phase}")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["finished_at"])) if s["finished_at"] else ""
        extra = f"  {s['error']}" if s.get("error") and s["status"] in ("failed", "interrupted") else ""
        stamped = " (stamped)" if s.get("stamped") else ""
        lines.append(f"  {s['id']:<{width}}  {s['status']:<11} attempts={s['attempts']:<2} {when}{stamped}{extra}")
    return "\n".join(lines)
