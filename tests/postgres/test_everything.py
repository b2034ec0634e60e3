"""postgres.copy of a database holding every object type pg_dump handles, judged by the independent checker
(tests/postgres/checker.py), and the checker's own power to catch what a copy leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.postgres import checker
from tests.postgres.cluster import Cluster
from tests.postgres.conftest import SECRETS, db_params, environment, parity_problems
from tests.postgres.everything import ROLES, build, create_roles
from tests.util import engine, write_runbook


def _runbook(tmp: Path, src: Cluster, dst: Cluster, source_db: str, target_db: str, **extra: object) -> Path:
    return write_runbook(tmp, {1: [
        {"id": "copy-all", "uses": "postgres.copy", "with": db_params(source_db, target_db, **extra)},
        {"id": "verify-all", "uses": "postgres.verify", "needs": ["copy-all"],
         "with": db_params(source_db, target_db)},
    ]}, environment=environment(src, dst), secrets=SECRETS)


@pytest.fixture
def everything(clusters: tuple[Cluster, Cluster]) -> str:
    src, _ = clusters
    build(src, "everything")
    return "everything"


def test_copy_of_everything_leaves_nothing_behind(clusters: tuple[Cluster, Cluster], tmp_path: Path,
                                                  pgenv: dict[str, str], everything: str) -> None:
    src, dst = clusters
    create_roles(dst)  # the application's roles exist on the target (managed with the cluster, not copied)
    counts = checker.counts(src, everything)
    print("object counts:", counts)
    # The database really holds what it claims to (a checker comparing empty databases proves nothing).
    assert counts["large objects"] == 4 and counts["relkind m"] == 3 and counts["event triggers"] == 1
    assert counts["policies"] == 2 and counts["default privileges"] == 3 and counts["database/role settings"] == 3
    eng = engine(_runbook(tmp_path, src, dst, everything, "everything_copy"))
    assert eng.run() == 2
    found = checker.differences(src, everything, dst, "everything_copy")
    print("\n".join(found))
    assert found == []
    assert parity_problems(src, dst, everything, "everything_copy") == []
    assert dst.sql("SELECT relispopulated FROM pg_class WHERE relname = 'mv_cold'", "everything_copy") == [(False,)]
    report = eng.state.steps["verify-all"].report
    assert report["large_objects"] == 4 and report["materialized_views"] == 3


def test_checker_catches_a_missing_large_object_and_an_unpopulated_matview(
        clusters: tuple[Cluster, Cluster], tmp_path: Path, pgenv: dict[str, str], everything: str) -> None:
    src, dst = clusters
    for role in ROLES:
        dst.sql(f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN "
                f"CREATE ROLE {role} NOLOGIN; END IF; END $$")
    assert engine(_runbook(tmp_path, src, dst, everything, "everything_bad")).run() == 2
    assert checker.differences(src, everything, dst, "everything_bad") == []
    oid = dst.sql("SELECT min(oid)::int FROM pg_largeobject_metadata", "everything_bad")[0][0]
    dst.sql(f"SELECT lo_unlink({oid})", "everything_bad")
    dst.sql("REFRESH MATERIALIZED VIEW app.mv_top WITH NO DATA", "everything_bad")
    found = checker.differences(src, everything, dst, "everything_bad")
    assert any(f.startswith(f"large object {oid}: ") and "target missing" in f for f in found), found
    assert any(f.startswith("relation app.mv_top: ") and "target unpopulated" in f for f in found), found
    # postgres.verify sees both too.
    problems = " ".join(parity_problems(src, dst, everything, "everything_bad"))
    assert "large objects" in problems and "app.mv_top" in problems
