"""`migrate status`: every step's status, grouped by phase."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from migrator.commands.common import engine_for
from migrator.progress import no_color


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


def watch(runbook: Path, state_dir: Path | None, interval: float = 2.0, count: int | None = None,
          journal_lines: int = 8) -> int:
    """`status --watch`: the status redrawn every `interval` seconds with the running step's elapsed
    time and the journal's tail, read-only (no lock taken), until Ctrl-C (exit 130) or `count` draws."""
    live: Any = None
    if sys.stdout.isatty():
        # rich only for --watch on a terminal: --version and completion import this module too.
        from rich.console import Console
        from rich.live import Live

        live = Live(console=Console(no_color=no_color(), highlight=False), auto_refresh=False)
        live.start()
    drawn = 0
    try:
        while count is None or drawn < count:
            text = watch_frame(runbook, state_dir, journal_lines)
            if live is not None:
                from rich.text import Text

                live.update(Text(text), refresh=True)
            else:
                print(text + "\n", flush=True)
            drawn += 1
            if count is None or drawn < count:
                time.sleep(interval)
    finally:
        if live is not None:
            live.stop()
    return drawn


def watch_frame(runbook: Path, state_dir: Path | None, journal_lines: int = 8) -> str:
    """One frame: the status table, the step running now (and for how long), the journal's last lines."""
    engine = engine_for(runbook, state_dir, check_secrets=False)
    data: dict[str, Any] = engine.status()
    now = time.time()
    running = [s for s in data["steps"] if s["status"] == "running"]
    done = sum(s["status"] in ("succeeded", "skipped") for s in data["steps"])
    head = [time.strftime("%H:%M:%S", time.localtime(now)) + f"  {done}/{len(data['steps'])} steps done"]
    for s in running:
        head.append(f"running: [{s['phase']}] {s['id']} ({s['uses']}) for {now - (s['started_at'] or now):.0f}s")
    tail = []
    for event in engine.session.journal.read()[-journal_lines:]:
        fields = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("ts", "event"))
        tail.append(f"  {time.strftime('%H:%M:%S', time.localtime(event.get('ts', 0)))} {event.get('event')} {fields}")
    return "\n".join([*head, "", render_status(data), "", "journal:", *tail])
