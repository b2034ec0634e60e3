"""postgres.copy `existing: set-aside`: a target database that already has tables (Keycloak fills an empty
database by itself; a refresh at the cutover finds the earlier copy) is renamed and kept, the copy goes
into a new one that the application cannot log in to until it is complete, and rollback puts the old one
back. Real PostgreSQL 15 servers."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.postgres.cluster import Cluster
from tests.postgres.conftest import SECRETS, db_params, environment, parity_problems
from tests.postgres.seed import seed
from tests.util import engine, migrate, write_runbook

APP_PASSWORD = "app-login-pw-4821"
KEPT = "kc_copy_before_copy-step"


def _runbook(tmp: Path, src: Cluster, dst: Cluster, existing: str) -> Path:
    return write_runbook(tmp, {1: [{"id": "copy-step", "uses": "postgres.copy",
                                    "with": db_params("kc", "kc_copy", owner_map={"app_owner": "kc_app"},
                                                      existing=existing)}]},
                         environment=environment(src, dst), secrets=SECRETS)


def _app_can_connect(dst: Cluster, database: str) -> bool:
    try:
        psycopg.connect(host="127.0.0.1", port=dst.port, user="kc_app", password=APP_PASSWORD, dbname=database,
                        connect_timeout=5).close()
        return True
    except psycopg.OperationalError as exc:
        assert "permission denied" in str(exc) or "not currently accepting connections" in str(exc), exc
        return False


def _self_initialised(dst: Cluster) -> None:
    """What Keycloak does on an empty database: its own schema and a first row."""
    # Its own role name: the session's servers are shared with the other copy tests (which map to app_rw).
    dst.sql(f"CREATE ROLE kc_app LOGIN PASSWORD '{APP_PASSWORD}'")
    dst.sql("CREATE DATABASE kc_copy OWNER kc_app")
    dst.sql("CREATE TABLE realm_by_itself (id text PRIMARY KEY); INSERT INTO realm_by_itself VALUES ('master')",
            "kc_copy")


def test_refuses_a_database_with_tables_unless_told(clusters: tuple[Cluster, Cluster], tmp_path: Path,
                                                    pgenv: dict[str, str]) -> None:
    src, dst = clusters
    seed(src, "kc")
    _self_initialised(dst)
    try:
        with pytest.raises(Exception, match="existing: set-aside"):
            engine(_runbook(tmp_path, src, dst, "refuse")).run()
        assert dst.sql("SELECT id FROM realm_by_itself", "kc_copy") == [("master",)]  # untouched
    finally:
        dst.sql("DROP DATABASE IF EXISTS kc_copy WITH (FORCE)")
        dst.sql("DROP ROLE IF EXISTS kc_app")
        src.sql("DROP DATABASE IF EXISTS kc WITH (FORCE)")


def test_set_aside_crash_resume_rollback(clusters: tuple[Cluster, Cluster], tmp_path: Path,
                                         pgenv: dict[str, str]) -> None:
    src, dst = clusters
    seed(src, "kc")
    _self_initialised(dst)
    rb = _runbook(tmp_path, src, dst, "set-aside")
    state = tmp_path / "state"
    args = ["--runbook", str(rb), "--state-dir", str(state)]
    try:
        plan = migrate("plan", *args, env=pgenv)
        assert f"rename it {KEPT}" in plan.stdout, plan.stdout + plan.stderr
        crashed = migrate("run", *args, env={**pgenv, "MIGRATE_FAILPOINTS": "copy-step:after-table@3=crash"})
        assert crashed.returncode != 0
        facts = json.loads((state / "test.state.json").read_text())["steps"]["copy-step"]["facts"]
        assert facts["set_aside"] == KEPT and facts["logins_out"] is True and len(facts["tables_done"]) == 3
        # Mid-copy: the old database kept under its new name, the new one closed to the application.
        # (Parked: nobody connects to it, superusers included, until rollback puts it back.)
        assert dst.sql(f"SELECT datallowconn FROM pg_database WHERE datname = '{KEPT}'") == [(False,)]
        assert not _app_can_connect(dst, "kc_copy")
        resumed = migrate("resume", *args, env=pgenv)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert parity_problems(src, dst, "kc", "kc_copy") == []
        assert dst.sql("SELECT to_regclass('public.realm_by_itself') IS NULL", "kc_copy") == [(True,)]
        assert _app_can_connect(dst, "kc_copy")
        assert dst.sql(f"SELECT 1 FROM pg_database WHERE datname = '{KEPT}'") == [(1,)]  # kept
        # Rollback: the copy dropped, the kept database back under its name and open again.
        engine(rb, state).rollback(step_id="copy-step", cascade=True)
        assert dst.sql(f"SELECT 1 FROM pg_database WHERE datname = '{KEPT}'") == []
        assert dst.sql("SELECT id FROM realm_by_itself", "kc_copy") == [("master",)]
        assert _app_can_connect(dst, "kc_copy")
    finally:
        for name in ("kc_copy", KEPT):
            dst.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        dst.sql("DROP ROLE IF EXISTS kc_app")
        src.sql("DROP DATABASE IF EXISTS kc WITH (FORCE)")
