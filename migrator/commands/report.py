"""The rehearsal report: state + journal turned into `<state>/<runbook>.report.json` and `.md`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from migrator.runbook.model import Runbook
from migrator.store.atomic import write_atomic
from migrator.store.journal import Journal
from migrator.store.state import State

FREEZE_TYPES = ("compose.freeze",)
CUTOVER_TYPES = ("dns.cutover",)
BACKUP_TYPES = ("backup.create",)


def _duration(rec: Any) -> float | None:
    if rec is None or rec.started_at is None or rec.finished_at is None:
        return None
    return round(rec.finished_at - rec.started_at, 3)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _add_copied(totals: dict[str, int], uses: str, figures: dict[str, Any]) -> None:
    """What a data-moving step moved: databases by rows and bytes, volumes by the bytes actually sent."""

    def num(key: str) -> int:
        value = figures.get(key)
        return int(value) if isinstance(value, int | float) else 0

    if uses in ("postgres.copy", "postgres.replicate"):
        totals["rows"] += num("rows")
        totals["bytes"] += num("bytes")
    elif uses == "volume.copy" and num("bytes_copied"):
        totals["bytes"] += num("bytes_copied")
        totals["files"] += num("files")


def _add_by_kind(kinds: dict[str, dict[str, int]], uses: str, figures: dict[str, Any]) -> None:
    """What was moved, per kind of store: databases (rows, bytes), Redis keys, volume files and bytes."""

    def num(key: str) -> int:
        value = figures.get(key)
        return int(value) if isinstance(value, int | float) else 0

    def add(kind: str, **values: int) -> None:
        k = kinds.setdefault(kind, {})
        for name, v in values.items():
            k[name] = k.get(name, 0) + v

    if uses in ("postgres.copy", "postgres.replicate") and (num("rows") or num("tables")):
        add("postgres", copies=1, tables=num("tables"), rows=num("rows"), bytes=num("bytes"))
    elif uses == "mysql.copy" and num("databases"):
        add("mysql", copies=num("databases"), tables=num("tables"), bytes=num("bytes"))
    elif uses == "redis.copy" and figures.get("keys") is not None:
        add("redis", copies=1, keys=num("keys"), keys_with_ttl=num("with_ttl"), bytes=num("bytes"),
            deleted=num("deleted"))
    elif uses == "volume.copy":
        add("volumes", copies=1, files=num("files"), bytes=num("bytes"), bytes_sent=num("bytes_copied"))


def build(runbook: Runbook, state: State, journal: Journal, since: float | None = None) -> dict[str, Any]:
    steps = []
    phases: dict[int, dict[str, Any]] = {}
    totals = {"rows": 0, "bytes": 0, "files": 0}
    kinds: dict[str, dict[str, int]] = {}
    coverage: dict[str, Any] | None = None
    parity: dict[str, Any] = {}
    backups: list[dict[str, Any]] = []
    for step in runbook.steps:
        rec = state.steps.get(step.id)
        figures = dict(rec.report) if rec else {}
        entry = {"id": step.id, "phase": step.phase, "uses": step.spec.uses,
                 "status": rec.status if rec else "pending", "attempts": rec.attempts if rec else 0,
                 "started_at": rec.started_at if rec else None, "finished_at": rec.finished_at if rec else None,
                 "start": _iso(rec.started_at if rec else None), "end": _iso(rec.finished_at if rec else None),
                 "duration_s": _duration(rec), "figures": figures}
        steps.append(entry)
        ph = phases.setdefault(step.phase, {"name": runbook.phase_names.get(step.phase, ""), "start": None,
                                            "end": None, "steps": 0, "succeeded": 0})
        ph["steps"] += 1
        if rec and rec.status == "succeeded":
            ph["succeeded"] += 1
        if rec and rec.started_at:
            ph["start"] = min(filter(None, [ph["start"], rec.started_at]))
        if rec and rec.finished_at:
            ph["end"] = max(filter(None, [ph["end"], rec.finished_at]))
        _add_copied(totals, step.spec.uses, figures)
        _add_by_kind(kinds, step.spec.uses, figures)
        if step.spec.uses in BACKUP_TYPES:
            backups.append({"step": step.id, "status": entry["status"], "bytes": figures.get("bytes"),
                            "seconds": figures.get("seconds"), "artefacts": figures.get("artefacts"),
                            "location": figures.get("location"), "folder": figures.get("folder")})
        if step.spec.uses == "compose.inspect" and isinstance(figures.get("coverage"), dict):
            coverage = figures["coverage"]
        if step.spec.uses.endswith(".verify") or "parity" in figures:
            parity[step.id] = {"status": entry["status"], **{k: v for k, v in figures.items() if k != "tables"}}

    def first(types: tuple[str, ...], field: str) -> float | None:
        for step in runbook.steps:
            rec = state.steps.get(step.id)
            if step.spec.uses in types and rec is not None:
                return getattr(rec, field)  # type: ignore[no-any-return]
        return None

    # The writers' freeze: the last compose.freeze of the runbook before the cutover (an earlier one, such
    # as Keycloak's in phase 2, is that service's own window). Last in the runbook's order, not the last to
    # start: in a parallel run an earlier freeze may start later (one freeze at a time), and taking it
    # would shorten the window.
    freezes = [at for s in runbook.steps if s.spec.uses in FREEZE_TYPES and s.id in state.steps
               for at in [state.steps[s.id].started_at] if at is not None]
    freeze_at = freezes[-1] if freezes else None
    dns_verified_at = first(CUTOVER_TYPES, "finished_at")
    downtime = round(dns_verified_at - freeze_at, 3) if freeze_at and dns_verified_at else None
    events = journal.read()
    if since is None:  # this run: from the last run-started in the journal
        since = max((e["ts"] for e in events if e.get("event") == "run-started"), default=None)
    gates = [e["step"] for e in events if e.get("event") == "gate-passed" and (since is None or e["ts"] >= since)]
    for ph in phases.values():
        ph["duration_s"] = round(ph["end"] - ph["start"], 3) if ph["start"] and ph["end"] else None
    all_ok = all(s["status"] in ("succeeded", "skipped") for s in steps)
    return {
        "runbook": runbook.name, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "result": "succeeded" if all_ok else "incomplete",
        "phases": {str(k): v for k, v in sorted(phases.items())},
        "steps": steps, "copied": totals, "moved_by_kind": kinds, "coverage": coverage, "parity": parity,
        "backups": backups,
        "write_downtime_s": downtime, "write_downtime_window": {"freeze_started": freeze_at, "dns_verified": dns_verified_at},
        "gates_passed": gates, "gates_passed_count": len(gates), "gates_since": since,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Rehearsal report: {report['runbook']}", "", f"Generated {report['generated_at']}; result: "
             f"**{report['result']}**.", ""]
    dt = report["write_downtime_s"]
    lines.append(f"- Write downtime (freeze to DNS verified): {dt:.1f} s" if dt is not None
                 else "- Write downtime: not measured (no freeze or DNS cutover ran)")
    c = report["copied"]
    lines.append(f"- Copied: {c['rows']} rows, {c['bytes']} bytes, {c['files']} files")
    lines.append(f"- Gates passed in this run: {report['gates_passed_count']}")
    if report.get("timeline"):
        lines += ["", f"![timeline: one bar per step, the write downtime shaded]({report['timeline']})"]
    for kind, figures in sorted((report.get("moved_by_kind") or {}).items()):
        lines.append(f"- Moved ({kind}): " + ", ".join(f"{v} {k}" for k, v in figures.items()))
    for b in report.get("backups") or []:
        lines.append(f"- Backup ({b['step']}, {b['status']}): " + (
            f"{b['bytes']} bytes in {b['artefacts']} artefacts, {b['seconds']} s, at {b['location']}/{b['folder']}"
            if b.get("bytes") is not None else "not taken"))
    cov = report.get("coverage")
    if cov:
        lines.append(f"- Coverage: {cov['percent']}% of {cov['total']} stateful things on the VPS mapped to a step "
                     f"or excluded ({cov['mapped']} mapped, {len(cov['excluded'])} excluded)")
        for e in cov["excluded"]:
            lines.append(f"  - excluded {e['kind']} {e['name']}: {e['reason']}")
        for u in cov.get("unmapped") or []:
            lines.append(f"  - NOT COVERED {u}")
    lines += ["", "| phase | name | steps | succeeded | duration (s) |", "|---|---|---|---|---|"]
    for num, ph in report["phases"].items():
        lines.append(f"| {num} | {ph['name']} | {ph['steps']} | {ph['succeeded']} | {ph['duration_s'] or ''} |")
    lines += ["", "| step | phase | type | status | attempts | start (UTC) | duration (s) |",
              "|---|---|---|---|---|---|---|"]
    for s in report["steps"]:
        lines.append(f"| {s['id']} | {s['phase']} | {s['uses']} | {s['status']} | {s['attempts']} | "
                     f"{(s.get('start') or '')[11:23]} | {s['duration_s'] if s['duration_s'] is not None else ''} |")
    if report["parity"]:
        lines += ["", "## Parity", ""]
        for sid, p in report["parity"].items():
            detail = ", ".join(f"{k}={v}" for k, v in p.items() if k != "status" and not isinstance(v, dict | list))
            lines.append(f"- {sid}: {p['status']}" + (f" ({detail})" if detail else ""))
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], state_dir: Path) -> tuple[Path, Path]:
    """`<runbook>.report.json`, `.report.md` and the timeline `.timeline.svg` the Markdown shows."""
    from migrator.commands import timeline

    json_path = state_dir / f"{report['runbook']}.report.json"
    md_path = state_dir / f"{report['runbook']}.report.md"
    svg_path = state_dir / f"{report['runbook']}.timeline.svg"
    report["timeline"] = svg_path.name
    write_atomic(svg_path, timeline.svg(report).encode(), mode=0o644)
    write_atomic(json_path, (json.dumps(report, indent=2, default=str) + "\n").encode(), mode=0o644)
    write_atomic(md_path, markdown(report).encode(), mode=0o644)
    return json_path, md_path


def summary(report: dict[str, Any]) -> str:
    ok = sum(1 for s in report["steps"] if s["status"] == "succeeded")
    phases = " ".join(f"p{k}={v['duration_s']:.1f}s" for k, v in report["phases"].items() if v["duration_s"] is not None)
    dt = report["write_downtime_s"]
    downtime = f"{dt:.1f} s" if dt is not None else "n/a"
    taken = [b for b in report.get("backups") or [] if b.get("bytes") is not None]
    backup = "".join(f", backup {b['bytes']} bytes in {b['seconds']} s" for b in taken)
    return (f"rehearsal {report['result']}: {ok}/{len(report['steps'])} steps, {report['gates_passed_count']} gates "
            f"passed, {report['copied']['rows']} rows / {report['copied']['bytes']} bytes copied, write downtime "
            f"{downtime}{backup}; {phases}")
