"""The report: each step's start and end, gates counted for this run only, and the timeline picture."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from migrator.commands import report, timeline
from migrator.commands.common import load as load_runbook
from migrator.store.journal import Journal
from migrator.store.state import StateStore
from tests.util import migrate, write_runbook

SVG = "{http://www.w3.org/2000/svg}"


def _runbook(tmp_path: Path) -> Path:
    return write_runbook(tmp_path, {
        1: [{"id": "a", "uses": "shell.run", "with": {"command": "sleep 0.2"}},
            {"id": "b", "uses": "shell.run", "needs": ["a"], "with": {"command": "true"}}],
        2: [{"id": "c", "uses": "shell.run", "needs": ["b"], "with": {"command": "sleep 0.1"}}],
    })


def _build(rb_path: Path, state_dir: Path) -> dict:
    rb = load_runbook(rb_path)
    state = StateStore(state_dir / f"{rb.name}.state.json").load(rb.name, str(rb.path))
    return report.build(rb, state, Journal(state_dir / f"{rb.name}.journal.jsonl"))


def test_steps_have_start_and_end_and_gates_count_this_run_only(tmp_path: Path) -> None:
    rb, st = _runbook(tmp_path), tmp_path / "st"
    assert migrate("run", "-r", str(rb), "--state-dir", str(st)).returncode == 0
    first = _build(rb, st)
    assert first["gates_passed_count"] == 3
    steps = {s["id"]: s for s in first["steps"]}
    for s in steps.values():
        assert s["started_at"] <= s["finished_at"]
        assert s["start"].endswith("Z") and s["end"] >= s["start"]
    assert steps["a"]["finished_at"] - steps["a"]["started_at"] >= 0.2
    assert steps["b"]["started_at"] >= steps["a"]["finished_at"]
    # a second run that re-runs one step: its report counts that one gate, not the journal's four
    assert migrate("stamp", "--step", "c", "--status", "pending", "-r", str(rb), "--state-dir", str(st)).returncode == 0
    assert migrate("run", "-r", str(rb), "--state-dir", str(st)).returncode == 0
    second = _build(rb, st)
    assert second["gates_passed"] == ["c"]
    events = [json.loads(x) for x in (st / "test.journal.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "gate-passed" for e in events) == 4


def test_the_timeline_has_a_bar_per_step_grouped_by_phase(tmp_path: Path) -> None:
    rb, st = _runbook(tmp_path), tmp_path / "st"
    assert migrate("run", "-r", str(rb), "--state-dir", str(st)).returncode == 0
    data = _build(rb, st)
    json_path, md_path = report.write(data, st)
    svg_path = st / "test.timeline.svg"
    root = ET.parse(svg_path).getroot()
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "step"]
    assert [b.get("data-step") for b in bars] == ["a", "b", "c"]
    assert all(b.get("data-status") == "succeeded" for b in bars)
    xs = {b.get("data-step"): (float(b.get("x")), float(b.get("width"))) for b in bars}
    assert xs["a"][0] < xs["b"][0] < xs["c"][0]  # on one time axis, in the order they ran
    assert xs["a"][1] > xs["b"][1]  # a slept 0.2 s, b did not
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts.index("phase 1: phase-1") < texts.index("a") < texts.index("phase 2: phase-2") < texts.index("c")
    assert "![timeline" in md_path.read_text() and "test.timeline.svg" in md_path.read_text()
    assert json.loads(json_path.read_text())["timeline"] == "test.timeline.svg"
    assert not [r for r in root.iter(f"{SVG}rect") if r.get("class") == "downtime"]  # nothing froze


def test_the_write_downtime_window_is_shaded() -> None:
    t = time.time()
    steps = [{"id": f"s{i}", "phase": 5, "uses": "x", "status": "succeeded", "started_at": t + i,
              "finished_at": t + i + 0.5} for i in range(10)]
    steps.append({"id": "esc<&>", "phase": 5, "uses": "x", "status": "running", "started_at": t + 10,
                  "finished_at": None})
    data = {"runbook": "r", "phases": {"5": {"name": "cutover"}}, "steps": steps, "write_downtime_s": 4.0,
            "write_downtime_window": {"freeze_started": t + 3, "dns_verified": t + 7}}
    root = ET.fromstring(timeline.svg(data, now=t + 12))
    shade = next(r for r in root.iter(f"{SVG}rect") if r.get("class") == "downtime")
    bars = {r.get("data-step"): r for r in root.iter(f"{SVG}rect") if r.get("class") == "step"}
    assert float(shade.get("x")) == float(bars["s3"].get("x"))
    assert abs(float(shade.get("x")) + float(shade.get("width")) - float(bars["s7"].get("x"))) < 0.2
    assert "write downtime 4.0 s" in [x.text for x in root.iter(f"{SVG}text")]
    running = bars["esc<&>"]  # escaped in the XML, drawn up to `now`
    assert running.get("data-status") == "running" and float(running.get("width")) > 50


def test_a_downtime_label_near_the_right_edge_ends_inside_the_picture() -> None:
    t = time.time()
    steps = [{"id": f"s{i}", "phase": 5, "uses": "x", "status": "succeeded", "started_at": t + i,
              "finished_at": t + i + 0.5} for i in range(10)]
    data = {"runbook": "r", "phases": {}, "steps": steps, "write_downtime_s": 59.0,
            "write_downtime_window": {"freeze_started": t + 8.6, "dns_verified": t + 9.4}}
    root = ET.fromstring(timeline.svg(data))
    label = next(x for x in root.iter(f"{SVG}text") if (x.text or "").startswith("write downtime"))
    shade = next(r for r in root.iter(f"{SVG}rect") if r.get("class") == "downtime")
    assert label.get("text-anchor") == "end"
    assert abs(float(label.get("x")) - (float(shade.get("x")) + float(shade.get("width")))) < 0.2
    assert float(label.get("x")) <= float(root.get("width"))
