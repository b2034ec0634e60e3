"""The restore drill on the rehearsal's own backup (backup-before-cutover's, kept under the state dir): the
target wiped in places (a table's rows in every database, an uploaded file, RentGuy's Redis), then
backup.restore of that backup in a run of its own (its own state dir; runbooks/sandbox.yaml plus one phase),
whose verify compares volumes, MySQL digests and Redis keys with the backup; and then the platform's
snapshot (databases, OpenBao, uploads, objects, DNS) is the rehearsal's again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from migrator.adapters.redis import RedisConn, client
from migrator.sandbox import envfile
from migrator.sandbox.layout import LOOPBACK, TARGET_PG_PORTS, TARGET_REDIS_PORT, Paths, default_dir
from tests.e2e.conftest import RUNBOOK, Rehearsal
from tests.util import REPO, engine


def _runbook(tmp: Path, folder: str, backups: Path) -> Path:
    """runbooks/sandbox.yaml, its relative paths kept working (tmp/{state,phases,migrator} link to the
    repository's), plus phase 6: the restore."""
    for name in ("state", "phases", "migrator"):
        (tmp / name).symlink_to(REPO / name)
    doc = yaml.safe_load(RUNBOOK.read_text())
    phase = tmp / "restore.yaml"
    phase.write_text(yaml.safe_dump({"phase": 6, "name": "restore-drill", "steps": [
        {"id": "restore-drill", "uses": "backup.restore",
         "with": {"from": {"dir": str(backups)}, "name": folder, "openbao_unseal_keys": "${secrets.bao_unseal}"}}]}))
    doc["phases"] = [*doc["phases"], str(phase)]
    doc["secrets"]["bao_unseal"] = {"env": "MIG_E2E_BAO_UNSEAL"}
    path = tmp / "runbooks" / "sandbox.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_rehearsals_backup_restores_a_wiped_target(rehearsed: Rehearsal, sandbox: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from migrator.sandbox import snapshot

    (backup,) = rehearsed.report["backups"]
    backups = rehearsed.state_dir / "backups"
    assert (backups / backup["folder"] / "backup.json").is_file()  # kept through the chaos runs' rollbacks
    assert snapshot.differences(rehearsed.reference, snapshot.take()) == []
    env = envfile.read(Path(sandbox.facts["env_file"]))

    # Wiped: the largest table of every target database emptied, an upload removed, Redis emptied.
    for name, port in TARGET_PG_PORTS.items():
        with psycopg.connect(host=LOOPBACK, port=port, user="postgres", password=env["TARGET_PG_PASSWORD"],
                             dbname=name, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                               "ORDER BY c.reltuples DESC, 1, 2 LIMIT 1").fetchone()
            assert row is not None, name
            conn.execute(sql.SQL("TRUNCATE {}.{} CASCADE").format(sql.Identifier(row[0]), sql.Identifier(row[1])))
    uploads = sorted(p for p in Paths(default_dir()).uploads_pvc.rglob("*") if p.is_file())
    assert uploads
    uploads[0].unlink()
    redis = client(RedisConn(LOOPBACK, TARGET_REDIS_PORT, env["RENTGUY_REDIS_PASSWORD"]))
    redis.flushall()
    assert snapshot.differences(rehearsed.reference, snapshot.take()) != []

    keys = json.loads(Path(sandbox.facts["openbao"]["target"]["init_file"]).read_text())["keys"]
    monkeypatch.setenv("MIG_E2E_BAO_UNSEAL", json.dumps(keys))
    rb = _runbook(tmp_path, backup["folder"], backups)
    eng = engine(rb, tmp_path / "restore-state")
    eng.run(phases=[6])
    assert eng.state.steps["restore-drill"].status == "succeeded"
    assert snapshot.differences(rehearsed.reference, snapshot.take()) == []
