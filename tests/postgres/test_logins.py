"""A target database being filled by postgres.copy never accepts the application's logins until the copy is
complete, whatever `existing` says: crash mid-copy, resume, rollback. Real PostgreSQL 15 servers."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.postgres.cluster import Cluster
from tests.postgres.conftest import SECRETS, db_params, environment, parity_problems
from tests.postgres.seed import seed
from tests.util import engine, migrate, write_runbook

PW = "lg-app-pw-5531"


def _runbook(tmp: Path, src: Cluster, dst: Cluster, target_db: str) -> Path:
    return write_runbook(tmp, {1: [{"id": "copy-lg", "uses": "postgres.copy",
                                    "with": db_params("lg", target_db, owner_map={"app_owner": "lg_owner"})}]},
                         environment=environment(src, dst), secrets=SECRETS)


def _connects(dst: Cluster, role: str, database: str) -> bool:
    try:
        psycopg.connect(host="127.0.0.1", port=dst.port, user=role, password=PW, dbname=database,
                        connect_timeout=5).close()
        return True
    except psycopg.OperationalError as exc:
        assert "permission denied for database" in str(exc), exc
        return False


@pytest.fixture
def app_roles(clusters: tuple[Cluster, Cluster]) -> object:
    src, dst = clusters
    seed(src, "lg")
    for role in ("lg_app", "lg_other"):
        dst.sql(f"CREATE ROLE {role} LOGIN PASSWORD '{PW}'")
    yield
    for name in ("lg_new", "lg_given"):
        dst.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    for role in ("lg_app", "lg_other", "lg_owner"):
        dst.sql(f"DROP ROLE IF EXISTS {role}")
    src.sql("DROP DATABASE IF EXISTS lg WITH (FORCE)")


def _facts(state: Path) -> dict[str, object]:
    return json.loads((state / "test.state.json").read_text())["steps"]["copy-lg"]["facts"]  # type: ignore[no-any-return]


def test_new_database_closed_until_complete_then_open(clusters: tuple[Cluster, Cluster], tmp_path: Path,
                                                      pgenv: dict[str, str], app_roles: object) -> None:
    """existing: refuse (the default), a database the copy creates."""
    src, dst = clusters
    rb = _runbook(tmp_path, src, dst, "lg_new")
    state = tmp_path / "state"
    args = ["--runbook", str(rb), "--state-dir", str(state)]
    crashed = migrate("run", *args, env={**pgenv, "MIGRATE_FAILPOINTS": "copy-lg:after-table@2=crash"})
    assert crashed.returncode != 0 and len(_facts(state)["tables_done"]) == 2  # type: ignore[arg-type]
    assert not _connects(dst, "lg_app", "lg_new")  # half-filled: the application stays out
    # Data all in, settings applied, not yet opened: still out.
    again = migrate("resume", *args, env={**pgenv, "MIGRATE_FAILPOINTS": "copy-lg:before-logins-in=crash"})
    assert again.returncode != 0 and _facts(state)["logins_out"] is True
    assert parity_problems(src, dst, "lg", "lg_new") == []
    assert not _connects(dst, "lg_app", "lg_new")
    resumed = migrate("resume", *args, env=pgenv)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # The source database's privileges (PUBLIC may connect and make temporary tables, as by default).
    assert _connects(dst, "lg_app", "lg_new") and _connects(dst, "lg_other", "lg_new")
    assert dst.sql("SELECT has_database_privilege('lg_app', 'lg_new', 'TEMPORARY')") == [(True,)]
    engine(rb, state).rollback(step_id="copy-lg", cascade=True)
    assert dst.sql("SELECT 1 FROM pg_database WHERE datname = 'lg_new'") == []


def test_provisioned_database_keeps_its_privileges_and_its_sessions_are_ended(
        clusters: tuple[Cluster, Cluster], tmp_path: Path, pgenv: dict[str, str], app_roles: object) -> None:
    """A database that exists (empty) before the copy, with its own privileges and an application connected."""
    src, dst = clusters
    dst.sql("CREATE DATABASE lg_given")
    dst.sql("REVOKE ALL ON DATABASE lg_given FROM PUBLIC")
    dst.sql("GRANT CONNECT ON DATABASE lg_given TO lg_app")
    before = dst.sql("SELECT datacl::text FROM pg_database WHERE datname = 'lg_given'")
    early = psycopg.connect(host="127.0.0.1", port=dst.port, user="lg_app", password=PW, dbname="lg_given",
                            autocommit=True)
    rb = _runbook(tmp_path, src, dst, "lg_given")
    state = tmp_path / "state"
    args = ["--runbook", str(rb), "--state-dir", str(state)]
    try:
        crashed = migrate("run", *args, env={**pgenv, "MIGRATE_FAILPOINTS": "copy-lg:after-table@3=crash"})
        assert crashed.returncode != 0
        with pytest.raises(psycopg.OperationalError):  # the session opened before the copy was ended
            early.execute("SELECT 1")
    finally:
        early.close()
    assert not _connects(dst, "lg_app", "lg_given") and not _connects(dst, "lg_other", "lg_given")
    resumed = migrate("resume", *args, env=pgenv)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert parity_problems(src, dst, "lg", "lg_given") == []
    assert _connects(dst, "lg_app", "lg_given") and not _connects(dst, "lg_other", "lg_given")  # as before
    # Rollback: recreated empty, with the privileges it had.
    engine(rb, state).rollback(step_id="copy-lg", cascade=True)
    assert dst.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", "lg_given") == [(0,)]
    assert _connects(dst, "lg_app", "lg_given") and not _connects(dst, "lg_other", "lg_given")
    assert before[0][0] is not None
