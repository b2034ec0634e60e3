"""postgres.copy and postgres.verify between two real PostgreSQL 15 servers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.postgres.cluster import Cluster
from tests.postgres.conftest import CANARY, SECRETS, db_params, environment, parity_problems
from tests.postgres.seed import seed
from tests.util import engine, migrate, status_json, write_runbook

OWNERS = {"app_owner": "app_rw"}


def _runbook(tmp: Path, src: Cluster, dst: Cluster, source_db: str, target_db: str, jobs: int = 2) -> Path:
    return write_runbook(tmp, {1: [
        {"id": "copy-step", "uses": "postgres.copy",
         "with": db_params(source_db, target_db, owner_map=OWNERS, jobs=jobs)},
        {"id": "verify-step", "uses": "postgres.verify", "needs": ["copy-step"],
         "with": db_params(source_db, target_db)},
    ]}, environment=environment(src, dst), secrets=SECRETS)



def test_copy_parity_every_type_then_rollback(clusters: tuple[Cluster, Cluster], tmp_path: Path,
                                              pgenv: dict[str, str]) -> None:
    src, dst = clusters
    seed(src, "shop")
    eng = engine(_runbook(tmp_path, src, dst, "shop", "shop_copy"))
    assert eng.run() == 2
    assert parity_problems(src, dst, "shop", "shop_copy") == []
    # Names, owners, extensions, enums, sequences came along.
    assert dst.sql('SELECT count(*) FROM "Sales"."Order Line"', "shop_copy") == [(4000,)]
    assert dst.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'Customer'", "shop_copy") == [("app_rw",)]
    assert dst.sql("SELECT extname FROM pg_extension WHERE extname = 'pgcrypto'", "shop_copy") == [("pgcrypto",)]
    assert dst.sql("SELECT last_value FROM public.ticket_seq", "shop_copy") == [(4242,)]
    assert dst.sql('SELECT status::text, moods::text[] FROM "Sales"."Customer" WHERE "Id" = 2', "shop_copy") == [
        ("Shipped Out", ["paid", "Shipped Out"])]
    rec = eng.state.steps["copy-step"]
    assert rec.report["tables"] == 6 and rec.report["rows"] == 1500 + 4000 + 800 + 603 + 3
    # Where the time went, by part, for an operator asking why a copy was slow.
    assert set(rec.report["phases"]) == {"pre_data", "data", "post_data", "sequences", "analyze"}
    assert sum(rec.report["phases"].values()) <= rec.report["seconds"] + 0.01
    # The plan of a fresh copy names the tables without a primary key.
    plan = engine(_runbook(tmp_path / "p", src, dst, "shop", "shop_other")).plan()
    text = json.dumps(plan)
    assert "public.audit_log" in text and "tables without a primary key" in text
    # Rollback drops the database it created (and the role it created).
    eng.rollback(step_id="copy-step", cascade=True)
    assert dst.sql("SELECT 1 FROM pg_database WHERE datname = 'shop_copy'") == []
    assert dst.sql("SELECT 1 FROM pg_roles WHERE rolname = 'app_rw'") == []


def test_gate_fails_and_names_the_changed_table(clusters: tuple[Cluster, Cluster], tmp_path: Path,
                                                pgenv: dict[str, str]) -> None:
    src, dst = clusters
    seed(src, "shop_gate")
    rb = _runbook(tmp_path, src, dst, "shop_gate", "shop_gate_copy")
    engine(rb).run(step_ids=["copy-step"])
    dst.sql("UPDATE inventory.items SET qty = qty + 1 WHERE sku = 'sku-7'", "shop_gate_copy")
    eng = engine(rb)
    with pytest.raises(Exception) as err:
        eng.run(step_ids=["verify-step"])
    assert "inventory.items (same 800 rows, different content)" in str(err.value)
    assert "Customer" not in str(err.value)
    dst.sql("DELETE FROM public.audit_log WHERE ctid = (SELECT min(ctid) FROM public.audit_log WHERE who = 'dup')",
            "shop_gate_copy")
    problems = parity_problems(src, dst, "shop_gate", "shop_gate_copy")
    assert "public.audit_log (rows 603 vs 602)" in problems[0]


def test_crash_mid_copy_resumes_without_duplicates(clusters: tuple[Cluster, Cluster], tmp_path: Path,
                                                   pgenv: dict[str, str]) -> None:
    src, dst = clusters
    seed(src, "shop_crash")
    rb = _runbook(tmp_path, src, dst, "shop_crash", "shop_crash_copy", jobs=2)
    state = tmp_path / "state"
    args = ["--runbook", str(rb), "--state-dir", str(state)]
    crashed = migrate("run", *args, env={**pgenv, "MIGRATE_FAILPOINTS": "copy-step:after-table@3=crash"})
    assert crashed.returncode != 0
    facts = json.loads((state / "test.state.json").read_text())["steps"]["copy-step"]["facts"]
    assert len(facts["tables_done"]) == 3 and not facts.get("complete")
    resumed = migrate("resume", *args, env=pgenv)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert parity_problems(src, dst, "shop_crash", "shop_crash_copy") == []
    status = status_json(rb, state, env=pgenv)
    assert json.dumps(status).count("succeeded") >= 2


def test_canary_password_never_in_argv_state_journal_or_log(clusters: tuple[Cluster, Cluster], tmp_path: Path,
                                                             pgenv: dict[str, str]) -> None:
    src, dst = clusters
    seed(src, "shop_canary")
    rb = _runbook(tmp_path, src, dst, "shop_canary", "shop_canary_copy")
    state = tmp_path / "state"
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for p in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    line = p.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if any(word in line for word in ("psql", "pg_dump", "postgres:", "migrator")):
                    seen.append(line)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc = migrate("run", "--runbook", str(rb), "--state-dir", str(state), env=pgenv)
    finally:
        stop.set()
        watcher.join()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any("psql" in s or "pg_dump" in s for s in seen), "the watcher saw no pg tool"
    assert not [s for s in seen if CANARY in s]
    for path in state.rglob("*"):
        if path.is_file():
            assert CANARY not in path.read_text(errors="replace"), path
    assert CANARY not in proc.stdout + proc.stderr
