"""Every source database holds its seeded rows and shapes; the target servers are up and empty."""

from __future__ import annotations

import psycopg
import pytest

from migrator.sandbox import seed, seed_sql
from migrator.sandbox.platform import SandboxInfo

from .helpers import env_of, paths_of

pytestmark = pytest.mark.sandbox


@pytest.mark.parametrize("db", ["rentguy", "psra", "wpcs", "keycloak"])
def test_seeded_row_counts(sandbox: SandboxInfo, db: str) -> None:
    paths = paths_of(sandbox)
    assert sandbox.scale is not None
    for table, expected in seed_sql.expected_counts(db, sandbox.scale).items():
        assert seed.count_rows(paths, db, table) == expected, table


def test_rentguy_has_the_awkward_shapes(sandbox: SandboxInfo) -> None:
    paths = paths_of(sandbox)
    q = seed._psql  # noqa: SLF001 - the test reads through the same docker exec path
    assert q(paths, "rentguy", 'SELECT count(*) FROM core."Tenant" WHERE "displayName" LIKE \'Tenant %\';') == "1000" \
        or sandbox.scale != 1
    no_pk = q(paths, "rentguy", """SELECT string_agg(n.nspname || '.' || c.relname, ',') FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN
        ('pg_catalog', 'information_schema') AND NOT EXISTS (SELECT 1 FROM pg_constraint k
        WHERE k.conrelid = c.oid AND k.contype = 'p');""")
    assert no_pk == "audit.event_log"
    types = q(paths, "rentguy", """SELECT string_agg(DISTINCT data_type, ',' ORDER BY data_type)
        FROM information_schema.columns WHERE table_schema IN ('core', 'billing', 'audit');""").split(",")
    for t in ("jsonb", "bytea", "ARRAY", "USER-DEFINED", "timestamp with time zone", "numeric"):
        assert t in types
    assert q(paths, "rentguy", "SELECT count(*) FROM pg_constraint WHERE contype = 'f';") == "5"
    assert int(q(paths, "rentguy", "SELECT last_value FROM billing.invoice_number_seq;")) >= 100000
    assert q(paths, "rentguy", "SHOW wal_level;") == "logical"


def test_keycloak_schema_has_realms_and_smoke_client(sandbox: SandboxInfo) -> None:
    paths = paths_of(sandbox)
    q = seed._psql  # noqa: SLF001
    assert q(paths, "keycloak", "SELECT string_agg(name, ',' ORDER BY name) FROM realm;") == "master,sevensa"
    secret = env_of(sandbox)["MIGRATOR_SMOKE_CLIENT_SECRET"]
    got = q(paths, "keycloak", "SELECT c.secret FROM client c JOIN realm r ON r.id = c.realm_id "
                               "WHERE r.name = 'sevensa' AND c.client_id = 'migrator-smoke';")
    assert got == secret


def test_source_password_matches_env(sandbox: SandboxInfo) -> None:
    """The env file's password is the one the source database really has (checked over TCP in-container)."""
    paths = paths_of(sandbox)
    from migrator.sandbox.compose import container_id
    from migrator.sandbox.dockerd import docker_cli, docker_env
    from migrator.sandbox.proc import run

    cid = container_id(paths, "psra-db")
    env = env_of(sandbox)
    ok = run([docker_cli(), "exec", "-i", "-e", "PGPASSWORD", cid, "psql", "-h", "127.0.0.1", "-U", "psra",
              "-d", "psra", "-Atc", "select 1"], env={**docker_env(paths), "PGPASSWORD": env["PSRA_DB_PASSWORD"]},
             check=False)
    assert ok.returncode == 0 and ok.stdout.strip() == b"1"
    bad = run([docker_cli(), "exec", "-i", "-e", "PGPASSWORD", cid, "psql", "-h", "127.0.0.1", "-U", "psra",
               "-d", "psra", "-Atc", "select 1"], env={**docker_env(paths), "PGPASSWORD": "wrong"}, check=False)
    assert bad.returncode != 0 and b"password authentication failed" in bad.stderr


def test_target_postgres_servers_are_up_and_empty(sandbox: SandboxInfo) -> None:
    password = env_of(sandbox)["TARGET_PG_PASSWORD"]
    assert len(sandbox.facts["target_databases"]) == 4
    for t in sandbox.facts["target_databases"]:
        with psycopg.connect(host=t["host"], port=t["port"], user=t["superuser"], password=password,
                             dbname=t["maintenance_db"], connect_timeout=5) as conn:
            assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
            assert conn.execute("SHOW server_version").fetchone()[0].startswith("15")  # type: ignore[index]
            dbs = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
            assert dbs == {"postgres", "template0", "template1"}
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host=t["host"], port=t["port"], user=t["superuser"], password="wrong",
                            dbname="postgres", connect_timeout=5).close()
