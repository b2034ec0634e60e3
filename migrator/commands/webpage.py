"""The page `migrate serve` shows: a snapshot dict in, HTML text out (pure, no I/O).

Every value from the state, the journal or the runbook goes through `html.escape` here; the page's
Content-Security-Policy (set by the server) also forbids inline scripts, so a value that slipped through
could not run. The script polls the fragment endpoint and swaps the body in place: no reload, no
framework, nothing fetched from outside.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

FRAGMENT_PATH = "/fragment"
STATE_PATH = "/api/state.json"
TIMELINE_PATH = "/timeline.svg"
POLL_MS = 1000

CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#fafafa;color:#212121}
header{background:#263238;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
header .conn{margin-left:auto;font-size:12px;padding:2px 8px;border-radius:8px;background:#2e7d32}
header .conn.lost{background:#c62828}
main{padding:12px 18px}
section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:10px 14px;margin-bottom:12px}
h2{font-size:15px;margin:2px 0 8px}
progress{width:100%;height:12px;margin:6px 0;accent-color:#2e7d32}
.copy{margin:4px 0 4px 18px}.copy progress{height:8px;accent-color:#1565c0}.copy .amount{color:#424242}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eeeeee;vertical-align:top}
th{background:#f5f5f5}
tr.phase td{background:#eceff1;font-weight:bold}
.status{font-weight:bold;padding:1px 6px;border-radius:4px;color:#fff;background:#757575}
.status.succeeded{background:#2e7d32}.status.failed{background:#c62828}.status.running{background:#f9a825;color:#000}
.status.interrupted{background:#ef6c00}.status.skipped{background:#9e9e9e}.status.rolled_back{background:#6a1b9a}
.status.pending{background:#bdbdbd;color:#000}
td.error{color:#b71c1c;font-family:monospace;white-space:pre-wrap;max-width:520px}
.journal{font-family:monospace;font-size:12px;white-space:pre-wrap;max-height:260px;overflow:auto;margin:0}
.timeline svg{max-width:100%;height:auto}
.note{color:#e65100}
.problem{color:#b71c1c;font-weight:bold}
"""

SCRIPT = f"""
"use strict";
let last = "";
async function refresh() {{
  const conn = document.getElementById("conn");
  const live = document.getElementById("live");
  const sel = window.getSelection();
  if (sel && sel.toString() && live.contains(sel.anchorNode)) {{
    // Swapping the page now would drop what the operator is selecting (an error to copy, say).
    conn.textContent = "paused while text is selected"; conn.className = "conn";
    return;
  }}
  try {{
    const r = await fetch("{FRAGMENT_PATH}", {{cache: "no-store"}});
    if (!r.ok) throw new Error(r.status);
    const text = await r.text();
    if (text !== last) {{ live.innerHTML = text; last = text; }}
    conn.textContent = "live"; conn.className = "conn";
  }} catch (e) {{
    conn.textContent = "disconnected: retrying"; conn.className = "conn lost";
  }}
}}
setInterval(refresh, {POLL_MS});
"""


def _hms(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else ""


def _secs(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f} s" if value < 120 else f"{int(value // 60)} min {int(value % 60):02d} s"


def page(snap: dict[str, Any]) -> str:
    """The whole page: the live part rendered now (it reads without script too), refreshed by the script."""
    title = escape(f"migrate: {snap.get('runbook', '')}")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="/page.css"><script src="/page.js" defer></script></head><body>'
            f'<header><h1>{title}</h1><span>read-only view of the state and the journal</span>'
            f'<span id="conn" class="conn">live</span></header>'
            f'<main id="live">{fragment(snap)}</main></body></html>')


def fragment(snap: dict[str, Any]) -> str:
    """The part the script swaps in every POLL_MS: summary, steps, timeline, journal."""
    if snap.get("problem"):
        return (f'<section><p class="problem" id="problem">{escape(snap["problem"])}</p>'
                f'<p>updated {escape(_hms(snap.get("now")))}; retrying.</p></section>')
    return "".join([_summary(snap), _steps(snap), _timeline(snap), _journal(snap)])


def _summary(snap: dict[str, Any]) -> str:
    prog = snap["progress"]
    lines = [f'<section id="summary"><h2>Runbook {escape(snap["runbook"])}</h2>',
             f'<div>updated <span id="updated">{escape(_hms(snap["now"]))}</span>; lock: '
             f'<span id="lock">{escape(snap["lock"])}</span></div>',
             f'<div id="progress">{prog["done"]}/{prog["total"]} steps done'
             + (f', {prog["failed"]} failed' if prog["failed"] else "") + '</div>',
             f'<progress value="{prog["done"]}" max="{max(prog["total"], 1)}"></progress>']
    for s in snap["running"]:
        lines.append(f'<div class="now-running">running: phase {s["phase"]} <b>{escape(s["id"])}</b> '
                     f'({escape(s["uses"])}), attempt {s["attempts"]}, for {escape(_secs(s["duration_s"]))}</div>')
        for bar in s.get("bars") or []:
            lines.append(_bar(s["id"], bar, snap["now"]))
    gates = snap.get("gates_passed") or []
    lines.append(f'<div id="gates">gates passed in this run: {len(gates)}'
                 + (": " + ", ".join(escape(g) for g in gates) if gates else "") + '</div>')
    if snap.get("runbook_changed"):
        lines.append('<div class="note">the runbook changed since the last run</div>')
    lines.append("</section>")
    return "".join(lines)


def _bar(step_id: str, bar: dict[str, Any], now: float) -> str:
    """One copy of the running step: done of total (bytes readable), its mean rate and the time left, as of
    the figures' last write."""
    done, total, unit = float(bar.get("completed") or 0), bar.get("total"), str(bar.get("unit") or "")
    at = float(bar.get("updated_at") or now)
    elapsed = max(at - float(bar.get("started_at") or at), 1e-3)
    if unit == "B":
        text = _bytes(done) + (f" of {_bytes(float(total))}" if total else "")
        if done:
            text += f" · {_bytes(done / elapsed)}/s"
            if total and done < float(total):
                text += f" · {_secs((float(total) - done) / (done / elapsed))} left"
    else:
        text = f"{done:.0f}" + (f" of {float(total):.0f}" if total else "") + (f" {unit}" if unit else "")
    meter = (f'<progress value="{min(done, float(total)):.0f}" max="{float(total):.0f}"></progress>' if total
             else "<progress></progress>")
    return (f'<div class="copy" data-step="{escape(step_id)}"><span class="what">{escape(str(bar.get("description", "")))}</span> '
            f'<span class="amount">{escape(text)}</span>{meter}</div>')


def _steps(snap: dict[str, Any]) -> str:
    rows = ['<section><h2>Steps</h2><table id="steps"><thead><tr><th>step</th><th>type</th><th>status</th>'
            '<th>attempts</th><th>started</th><th>duration</th><th>figures</th><th>error</th></tr></thead><tbody>']
    phase = None
    for s in snap["steps"]:
        if s["phase"] != phase:
            phase = s["phase"]
            name = snap["phase_names"].get(str(phase), "")
            rows.append(f'<tr class="phase"><td colspan="8">phase {phase}' + (f": {escape(name)}" if name else "")
                        + '</td></tr>')
        status = escape(s["status"]) + (" (stamped)" if s.get("stamped") else "")
        error = (s.get("error") or "") if s["status"] in ("failed", "interrupted") else ""
        rows.append(f'<tr class="step" data-step="{escape(s["id"])}"><td>{escape(s["id"])}</td>'
                    f'<td>{escape(s["uses"])}</td><td><span class="status {escape(s["status"])}">{status}</span></td>'
                    f'<td>{s["attempts"]}</td><td>{escape(_hms(s["started_at"]))}</td>'
                    f'<td>{escape(_secs(s["duration_s"]))}</td><td class="figures">{escape(_figures(s))}</td>'
                    f'<td class="error">{escape(error)}</td></tr>')
    rows.append("</tbody></table></section>")
    return "".join(rows)


def _bytes(n: float) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _figures(step: dict[str, Any]) -> str:
    """What a step reported it moved (rows, bytes, files...; the first four), bytes readable."""
    out = []
    for key, value in list((step.get("figures") or {}).items())[:4]:
        shown = _bytes(value) if "bytes" in key else f"{value:g}" if isinstance(value, float) else str(value)
        out.append(f"{key}={shown}")
    return " ".join(out)


def _timeline(snap: dict[str, Any]) -> str:
    # The SVG comes from migrator.commands.timeline, which escapes every value it draws.
    return f'<section class="timeline" id="timeline"><h2>Timeline</h2>{snap["timeline_svg"]}</section>'


def _journal(snap: dict[str, Any]) -> str:
    lines = []
    for e in snap["journal"]:
        fields = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("ts", "event"))
        lines.append(f"{_hms(e.get('ts'))} {e.get('event')} {fields}")
    body = escape("\n".join(lines)) if lines else "(empty)"
    return f'<section><h2>Journal (last {len(lines)} events)</h2><pre class="journal" id="journal">{body}</pre></section>'
