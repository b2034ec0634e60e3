"""Everything a run writes lives under its state directory: a step's backups too, not next to the
runbook, whatever --state-dir says."""

from __future__ import annotations

from pathlib import Path

from tests.util import migrate, write_runbook


def test_backups_go_under_the_state_dir(tmp_path: Path) -> None:
    rb_dir, state = tmp_path / "runbook", tmp_path / "elsewhere" / "st"
    target = tmp_path / "data" / "app.conf"
    target.parent.mkdir()
    target.write_text("previous content\n")
    rb = write_runbook(rb_dir, {1: [{"id": "conf", "uses": "file.write",
                                     "with": {"path": str(target), "content": "new content\n"}}]})
    before = {p.relative_to(rb_dir) for p in rb_dir.rglob("*")}
    assert migrate("run", "-r", str(rb), "--state-dir", str(state)).returncode == 0
    assert target.read_text() == "new content\n"
    backup = state / "backups" / "conf.bak"
    assert backup.read_text() == "previous content\n" and backup.stat().st_mode & 0o777 == 0o600
    assert {p.relative_to(rb_dir) for p in rb_dir.rglob("*")} == before  # nothing written by the runbook
    assert migrate("rollback", "--step", "conf", "-r", str(rb), "--state-dir", str(state)).returncode == 0
    assert target.read_text() == "previous content\n"
