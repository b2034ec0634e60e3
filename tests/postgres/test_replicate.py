"""postgres.replicate then postgres.catchup: changes made while replicating arrive; sequences end ahead;
large objects and materialized views (which logical replication does not carry) match at the cutover."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.postgres.cluster import Cluster
from tests.postgres.conftest import CANARY, SECRETS, db_params, environment
from tests.postgres.seed import seed
from tests.util import engine, write_runbook


def _wait_for(cond: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "replicated rows did not arrive in time"
        time.sleep(0.1)


LO_AND_MATVIEWS = """
SELECT lo_from_bytea(91001, 'first'), lo_from_bytea(91002, 'second'), lo_from_bytea(91003, 'third');
CREATE MATERIALIZED VIEW public.hot AS SELECT count(*) AS n FROM "Sales"."Customer";
CREATE MATERIALIZED VIEW public.hot_on_hot AS SELECT n * 2 AS n FROM public.hot;  -- refreshed after hot
CREATE MATERIALIZED VIEW public.cold AS SELECT count(*) AS n FROM public.audit_log;
"""

# While replicating: a large object added (owned by a mapped role), one rewritten, one truncated, one
# removed; matviews refreshed (hot, then hot_on_hot, which reads it) and one emptied (cold: WITH NO DATA).
LO_AND_MATVIEW_CHANGES = """
SELECT lo_from_bytea(91004, 'born during the replication');
ALTER LARGE OBJECT 91004 OWNER TO app_owner;
SELECT lo_put(91001, 0, 'first, rewritten and longer');
BEGIN; SELECT lo_truncate(lo_open(91003, 131072), 2); COMMIT;
SELECT lo_unlink(91002);
REFRESH MATERIALIZED VIEW public.hot;
REFRESH MATERIALIZED VIEW public.hot_on_hot;
REFRESH MATERIALIZED VIEW public.cold WITH NO DATA;
"""


def test_replicate_then_catchup(clusters: tuple[Cluster, Cluster], tmp_path: Path, pgenv: dict[str, str]) -> None:
    src, dst = clusters
    seed(src, "shop_repl")
    src.sql(LO_AND_MATVIEWS, "shop_repl")
    target = "shop_repl_t"
    rb = write_runbook(tmp_path, {
        1: [{"id": "replicate", "uses": "postgres.replicate",
             "with": db_params("shop_repl", target, owner_map={"app_owner": "app_rw"}),
             "gate": {"timeout": 30, "interval": 0.2}}],
        2: [{"id": "catchup", "uses": "postgres.catchup", "with": {"replicate": "replicate", "sequence_margin": 100}},
            {"id": "parity", "uses": "postgres.verify", "needs": ["catchup"], "with": db_params("shop_repl", target)}],
    }, environment=environment(src, dst), secrets=SECRETS)
    plan = engine(rb).plan(phases=[1])
    assert "REPLICA IDENTITY FULL" in str(plan) and "public.audit_log" in str(plan)

    engine(rb).run(phases=[1])
    assert dst.sql('SELECT count(*) FROM "Sales"."Customer"', target) == [(1500,)]
    assert src.sql("SELECT relreplident::text FROM pg_class WHERE relname = 'audit_log'", "shop_repl") == [("f",)]

    # Writes during the replicate phase, including updates and deletes on the table without a primary key.
    src.sql("""INSERT INTO "Sales"."Customer" ("Name") SELECT 'late ' || g FROM generate_series(1, 50) g""", "shop_repl")
    src.sql("UPDATE public.audit_log SET what = 'changed' WHERE who = 'user1'", "shop_repl")
    src.sql("DELETE FROM public.audit_log WHERE who = 'user2'", "shop_repl")
    src.sql("SELECT nextval('public.ticket_seq') FROM generate_series(1, 10)", "shop_repl")
    src.sql(LO_AND_MATVIEW_CHANGES, "shop_repl")  # none of which the subscription carries
    _wait_for(lambda: dst.sql('SELECT count(*) FROM "Sales"."Customer"', target) == [(1550,)])
    _wait_for(lambda: dst.sql("SELECT count(*) FROM public.audit_log WHERE who = 'user2'", target) == [(0,)])

    eng = engine(rb)
    eng.run(phases=[2])  # catchup, then the parity gate
    # Independently of postgres.verify: every large object as on the source, by oid and bytes, the new one
    # owned by the mapped role; the matviews' state and rows as on the source.
    los = "SELECT m.oid::bigint, lo_get(m.oid), pg_get_userbyid(m.lomowner) FROM pg_largeobject_metadata m ORDER BY 1"
    assert [r[:2] for r in dst.sql(los, target)] == [r[:2] for r in src.sql(los, "shop_repl")] == [
        (91001, b"first, rewritten and longer"), (91003, b"th"), (91004, b"born during the replication")]
    assert dict((r[0], r[2]) for r in dst.sql(los, target))[91004] == "app_rw"
    mvs = "SELECT relname::text, relispopulated FROM pg_class WHERE relkind = 'm' ORDER BY 1"
    assert dst.sql(mvs, target) == src.sql(mvs, "shop_repl") == [("cold", False), ("hot", True), ("hot_on_hot", True)]
    assert dst.sql("SELECT n FROM public.hot_on_hot", target) == [(1550 * 2,)]
    rep = eng.state.steps["catchup"].report
    assert (rep["large_objects_added"], rep["large_objects_updated"], rep["large_objects_removed"],
            rep["matviews_refreshed"]) == (1, 2, 1, 2)
    src_seq = dict(src.sql("SELECT sequencename, last_value FROM pg_sequences", "shop_repl"))
    dst_seq = dict(dst.sql("SELECT sequencename, last_value FROM pg_sequences", target))
    assert src_seq["ticket_seq"] == 4252 and src_seq["Customer_Id_seq"] == 1550
    assert all(dst_seq[k] >= v + 100 for k, v in src_seq.items() if v is not None), (src_seq, dst_seq)
    # The target is writable and the replication is gone from both sides.
    dst.sql("""INSERT INTO "Sales"."Customer" ("Name") VALUES ('after cutover')""", target)
    assert dst.sql("SELECT count(*) FROM pg_subscription") == [(0,)]
    assert src.sql("SELECT count(*) FROM pg_publication", "shop_repl") == [(0,)]
    assert src.sql("SELECT count(*) FROM pg_replication_slots") == [(0,)]
    assert src.sql("SELECT relreplident::text FROM pg_class WHERE relname = 'audit_log'", "shop_repl") == [("d",)]
    assert eng.state.steps["catchup"].report["seconds"] < 10

    # Rollback of replicate removes the target database.
    engine(rb).rollback(step_id="replicate", cascade=True)
    assert dst.sql(f"SELECT 1 FROM pg_database WHERE datname = '{target}'") == []


def test_the_subscription_password_is_in_no_sql_text(clusters: tuple[Cluster, Cluster], tmp_path: Path,
                                                     pgenv: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The canary source password: not in pg_stat_activity nor in the argv of any process while the step
    runs, not in the target server's log with EVERY statement logged (the step's own log-hushing turned
    off), not in pg_subscription, not in the state or the journal; it is in a 0600 passfile on the target
    server's disk, which the subscription authenticates with (the source requires scram for TCP), and
    which is removed when the subscription is dropped."""
    import threading

    from migrator.steps.postgres import pg_replicate

    src, dst = clusters
    seed(src, "shop_pw")
    target = "shop_pw_t"
    monkeypatch.setattr(pg_replicate, "quiet_session", lambda c: None)
    dst.sql("ALTER SYSTEM SET log_statement = 'all'")
    dst.sql("ALTER SYSTEM SET log_min_error_statement = 'error'")
    dst.sql("SELECT pg_reload_conf()")
    seen: list[str] = []
    polls = {"n": 0, "argv": 0}
    stop = threading.Event()

    def poll() -> None:
        import psycopg

        with psycopg.connect(**dst.conn().kwargs(), autocommit=True) as c:
            while not stop.is_set():
                for (query,) in c.execute("SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid()"):
                    polls["n"] += 1
                    if query and CANARY in query:
                        seen.append(query)
                for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                    try:
                        argv = cmdline.read_bytes()
                    except OSError:
                        continue
                    polls["argv"] += 1
                    if CANARY.encode() in argv:
                        seen.append(f"{cmdline}: {argv!r}")
                time.sleep(0.002)

    rb = write_runbook(tmp_path, {
        1: [{"id": "replicate", "uses": "postgres.replicate", "with": db_params("shop_pw", target),
             "gate": {"timeout": 30, "interval": 0.2}}],
        2: [{"id": "catchup", "uses": "postgres.catchup", "with": {"replicate": "replicate"}}],
    }, environment=environment(src, dst), secrets=SECRETS)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        engine(rb).run(phases=[1])
        src.sql("""INSERT INTO "Sales"."Customer" ("Name") VALUES ('through the passfile')""", "shop_pw")
        _wait_for(lambda: dst.sql("""SELECT count(*) FROM "Sales"."Customer" WHERE "Name" = 'through the passfile'""",
                                  target) == [(1,)])
        (conninfo,) = dst.sql("SELECT subconninfo FROM pg_subscription WHERE subname = 'migrator_shop_pw_t'")[0]
        passfile = dst.data / "migrator-migrator_shop_pw_t.pgpass"
        assert f"passfile='{passfile}'" in conninfo and "password" not in conninfo and CANARY not in conninfo
        assert passfile.stat().st_mode & 0o777 == 0o600 and passfile.owner() == "postgres"
        assert passfile.read_text() == f"*:*:*:*:{CANARY}\n"
        engine(rb).run(phases=[2])  # catchup drops the subscription
        assert not passfile.exists()
    finally:
        stop.set()
        poller.join(timeout=5)
        dst.sql("ALTER SYSTEM RESET log_statement")
        dst.sql("ALTER SYSTEM RESET log_min_error_statement")
        dst.sql("SELECT pg_reload_conf()")
    log = (dst.root / "log").read_text(errors="replace")
    assert "CREATE SUBSCRIPTION" in log and "passfile=" in log  # every statement was logged
    assert CANARY not in log
    assert polls["n"] > 0 and polls["argv"] > 0 and seen == []
    for kept in (tmp_path / "state").rglob("*"):  # the state file, the journal, the backups
        if kept.is_file():
            assert CANARY.encode() not in kept.read_bytes(), kept
    engine(rb).rollback(step_id="replicate", cascade=True)
