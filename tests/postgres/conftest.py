from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.postgres.cluster import Cluster

CANARY = "canary-Pg7w2-not-in-argv"

needs_pg = pytest.mark.skipif(not Path("/usr/lib/postgresql/15/bin/initdb").exists() or shutil.which("runuser") is None,
                              reason="PostgreSQL 15 server binaries not installed")


@pytest.fixture(scope="session")
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    """A source and a target server (the target stands for the StatefulSet), both behind the canary."""
    if not Path("/usr/lib/postgresql/15/bin/initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries not installed")
    src = Cluster("src", CANARY).start()
    dst = Cluster("dst", CANARY).start()
    try:
        yield src, dst
    finally:
        src.stop()
        dst.stop()


@pytest.fixture
def pgenv(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("PG_PASSWORD", CANARY)
    return {"PG_PASSWORD": CANARY}


def environment(src: Cluster, dst: Cluster) -> dict[str, Any]:
    return {"target": {"ingress_address": "127.0.0.1", "data_access": "endpoint",
                       "endpoints": {"src-db": src.endpoint(), "rentguy-db": dst.endpoint()}}}


def db_params(source_db: str, target_db: str, **extra: Any) -> dict[str, Any]:
    return {"source": {"endpoint": "src-db", "database": source_db, "user": "postgres",
                       "password": "${secrets.pg}"},
            "target": {"endpoint": "rentguy-db", "database": target_db, "user": "postgres",
                       "password": "${secrets.pg}"},
            **extra}


SECRETS = {"pg": {"env": "PG_PASSWORD"}}


def no_pg_env() -> None:
    for key in [k for k in os.environ if k.startswith("PG") and k != "PG_PASSWORD"]:
        os.environ.pop(key)


def parity_problems(src: Cluster, dst: Cluster, source_db: str, target_db: str) -> list[str]:
    """postgres.verify's comparison of a source and a target database (empty: identical)."""
    from migrator.adapters.pgsource import PgSource
    from migrator.steps.postgres import pg_schema
    from migrator.steps.postgres.pg_verify import compare

    problems, _ = compare(PgSource.local(src.conn(source_db)).query, pg_schema.query_of(dst.conn(target_db)))
    return problems
