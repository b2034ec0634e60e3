"""The night as a picture: an SVG timeline drawn from a report (no plotting library).

One bar per step that ran, grouped under its phase, on a common time axis; the write-downtime window
(writers frozen to DNS verified) shaded across every row. Pure: report dict in, SVG text out, so the
report, `migrate serve` and the tests all draw the same thing.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "running": "#f9a825", "interrupted": "#ef6c00",
           "skipped": "#9e9e9e", "rolled_back": "#6a1b9a"}
ROW, LABEL_W, PLOT_W, TOP, PAD = 18, 230, 760, 46, 10


def _ticks(span: float) -> float:
    """A tick step giving 4-10 ticks over `span` seconds (1, 2, 5 x 10^n)."""
    raw = max(span, 1e-3) / 8
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def svg(report: dict[str, Any], now: float | None = None) -> str:
    """The timeline of `report` (build()'s dict); a step still running ends at `now`."""
    steps = [s for s in report["steps"] if s.get("started_at")]
    ends = [s.get("finished_at") or now or s["started_at"] for s in steps]
    t0 = min((s["started_at"] for s in steps), default=0.0)
    t1 = max(ends, default=t0)
    span = max(t1 - t0, 1.0)

    def x(t: float) -> float:
        return LABEL_W + (t - t0) / span * PLOT_W

    rows: list[tuple[str, Any]] = []
    for phase in sorted({s["phase"] for s in steps}):
        name = (report.get("phases") or {}).get(str(phase), {}).get("name", "")
        rows.append(("phase", f"phase {phase}" + (f": {name}" if name else "")))
        rows += [("step", s) for s in sorted((s for s in steps if s["phase"] == phase), key=lambda s: s["started_at"])]
    height = TOP + ROW * max(len(rows), 1) + 34
    width = LABEL_W + PLOT_W + PAD * 2
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<title>{escape(report.get("runbook", ""))}: timeline</title>',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{PAD}" y="18" font-size="14" font-weight="bold">{escape(report.get("runbook", ""))}: '
           f'{len(steps)} steps over {span:.1f} s</text>']
    window = report.get("write_downtime_window") or {}
    frozen, verified = window.get("freeze_started"), window.get("dns_verified")
    end_window: float | None = verified or now
    if frozen and end_window:
        out.append(f'<rect class="downtime" x="{x(frozen):.1f}" y="{TOP - 6}" '
                   f'width="{max(x(end_window) - x(frozen), 1):.1f}" '
                   f'height="{ROW * len(rows) + 6}" fill="#ffcdd2" fill-opacity="0.6"/>')
        label = f"write downtime {report['write_downtime_s']:.1f} s" if report.get("write_downtime_s") is not None \
            else "writers frozen"
        # Near the right edge the label ends at the window's end instead (else the SVG cuts it off).
        label_x, anchor = x(frozen), "start"
        if label_x + 6.5 * len(label) > width - PAD:
            label_x, anchor = x(end_window), "end"
        out.append(f'<text x="{label_x:.1f}" y="{TOP - 10}" text-anchor="{anchor}" fill="#b71c1c">{escape(label)}</text>')
    tick = _ticks(span)
    axis_y = TOP + ROW * len(rows) + 4
    k = 0
    while k * tick <= span + 1e-9:
        tx = x(t0 + k * tick)
        out.append(f'<line x1="{tx:.1f}" y1="{TOP - 4}" x2="{tx:.1f}" y2="{axis_y}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis_y + 14}" text-anchor="middle" fill="#616161">{k * tick:g}s</text>')
        k += 1
    for i, (kind, item) in enumerate(rows):
        y = TOP + i * ROW
        if kind == "phase":
            out.append(f'<text x="{PAD}" y="{y + 13}" font-weight="bold">{escape(item)}</text>')
            continue
        end = item.get("finished_at") or now or item["started_at"]
        colour = COLOURS.get(item["status"], "#1565c0")
        dur = end - item["started_at"]
        out.append(f'<text x="{PAD + 12}" y="{y + 13}">{escape(item["id"])}</text>')
        out.append(f'<rect class="step" data-step="{escape(item["id"])}" data-status="{escape(item["status"])}" '
                   f'x="{x(item["started_at"]):.1f}" y="{y + 3}" width="{max(x(end) - x(item["started_at"]), 1.5):.1f}" '
                   f'height="{ROW - 6}" fill="{colour}"><title>{escape(item["id"])} ({escape(item["uses"])}): '
                   f'{escape(item["status"])}, {dur:.1f} s</title></rect>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
