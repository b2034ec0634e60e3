"""backup.create / backup.restore on a volume target alone (no sandbox): to a directory, restored after a
wipe file by file, a tampered backup refused with nothing restored; rollback keeping the backup (and
journalling where it is) unless `on_rollback: delete`, which removes only what the step wrote; and bad
params as one line naming the field."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import PermanentError
from migrator.steps import volume_manifest as vm
from tests.util import engine, migrate, write_runbook


def _runbook(tmp: Path, pvc: Path, name: str = "rb", **more: Any) -> Path:
    to = {"dir": str(tmp / "backups")}
    return write_runbook(tmp / name, {
        1: [{"id": "backup", "uses": "backup.create",
             "with": {"to": to, "databases": [], "volumes": ["uploads"], "openbao": False, **more}}],
        2: [{"id": "restore", "uses": "backup.restore", "with": {"from": to, "backup_step": "backup"}}],
    }, environment={"target": {"ingress_address": "127.0.0.1", "volume_paths": {"uploads": str(pvc)}}})


def _files(root: Path) -> dict[str, tuple[str, str | None]]:
    return {p: (e.kind, e.sha256 or e.link) for p, e in vm.scan(root).entries.items()}


def test_a_volume_backed_up_wiped_restored_and_rolled_back(tmp_path: Path) -> None:
    pvc = tmp_path / "pvc"
    (pvc / "a" / "b").mkdir(parents=True)
    (pvc / "a" / "b" / "photo.jpg").write_bytes(os.urandom(200_000))
    (pvc / "readme").write_text("hi\n")
    (pvc / "link").symlink_to("a/b/photo.jpg")
    (pvc / "empty").mkdir()
    before = _files(pvc)
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "someone-elses").write_text("kept\n")
    rb, state = _runbook(tmp_path, pvc), tmp_path / "state"
    eng = engine(rb, state)
    eng.run(phases=[1])
    rec = eng.state.steps["backup"]
    assert rec.report["artefacts"] == 1 and rec.report["bytes"] > 200_000
    folder = tmp_path / "backups" / rec.facts["folder"]
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [
        "backup.json", "backup.json.sha256", "uploads.tar", "uploads.tar.sha256"]
    assert oct(folder.joinpath("volumes", "uploads.tar").stat().st_mode & 0o777) == "0o600"

    # Wiped: a file changed, one removed, one added.
    (pvc / "readme").write_text("changed\n")
    (pvc / "a" / "b" / "photo.jpg").unlink()
    (pvc / "stray").write_text("x")
    wiped = _files(pvc)

    # A tampered tar: refused before anything is restored.
    tar = folder / "volumes" / "uploads.tar"
    data = bytearray(tar.read_bytes())
    data[len(data) // 3] ^= 0x01
    tar.write_bytes(bytes(data))
    with pytest.raises(PermanentError, match="uploads.tar has sha256 .* refusing to restore from it"):
        engine(rb, state).run(phases=[2])
    assert _files(pvc) == wiped

    # The backup made right again: restored, file by file.
    data[len(data) // 3] ^= 0x01
    tar.write_bytes(bytes(data))
    engine(rb, state).run(phases=[2])
    assert _files(pvc) == before

    # Rolled back: the backup is kept (the default), and the journal says where.
    kept = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    engine(rb, state).rollback(phase=1)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == kept
    journal = [json.loads(x) for x in next(state.glob("*.journal.jsonl")).read_text().splitlines()]
    (event,) = [e for e in journal if e.get("event") == "backup-kept"]
    assert (event["folder"], event["complete"], event["objects"]) == (folder.name, True, 2)

    # on_rollback: delete removes what that step wrote, and only that.
    rb2, state2 = _runbook(tmp_path, pvc, "rb2", on_rollback="delete"), tmp_path / "state2"
    eng = engine(rb2, state2)
    eng.run(phases=[1])
    second = tmp_path / "backups" / eng.state.steps["backup"].facts["folder"]
    assert second.is_dir() and second != folder
    engine(rb2, state2).rollback(phase=1)
    assert not second.exists() and sorted(p.relative_to(folder) for p in folder.rglob("*")) == kept
    assert (tmp_path / "backups" / "someone-elses").read_text() == "kept\n"


def test_bad_params_are_one_line_naming_the_field(tmp_path: Path) -> None:
    rb = write_runbook(tmp_path / "rb", {1: [
        {"id": "b", "uses": "backup.create", "with": {"to": {"dir": "x", "s3": {"bucket": "b", "access_key_id": "a",
                                                                                 "secret_access_key": "s"}}}}]})
    proc = migrate("plan", "--runbook", str(rb), "--state-dir", str(tmp_path / "st"))
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line.endswith("steps.0.with.to: Value error, give exactly one of dir, s3"), line
    rb = write_runbook(tmp_path / "rb2", {1: [
        {"id": "b", "uses": "backup.create", "with": {"to": {"s3": {
            "bucket": "b", "endpoint_url": "http://s3.example.org", "access_key_id": "a", "secret_access_key": "s"}}}}]})
    proc = migrate("plan", "--runbook", str(rb), "--state-dir", str(tmp_path / "st"))
    assert proc.returncode == 2 and "with.to.s3: Value error, endpoint_url must be https://" in proc.stderr
