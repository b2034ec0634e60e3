"""postgres.replicate then postgres.catchup: changes made while replicating arrive; sequences end ahead."""

from __future__ import annotations

import time
from pathlib import Path

from tests.postgres.cluster import Cluster
from tests.postgres.conftest import SECRETS, db_params, environment
from tests.postgres.seed import seed
from tests.util import engine, write_runbook


def _wait_for(cond: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "replicated rows did not arrive in time"
        time.sleep(0.1)


def test_replicate_then_catchup(clusters: tuple[Cluster, Cluster], tmp_path: Path, pgenv: dict[str, str]) -> None:
    src, dst = clusters
    seed(src, "shop_repl")
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
    _wait_for(lambda: dst.sql('SELECT count(*) FROM "Sales"."Customer"', target) == [(1550,)])
    _wait_for(lambda: dst.sql("SELECT count(*) FROM public.audit_log WHERE who = 'user2'", target) == [(0,)])

    eng = engine(rb)
    eng.run(phases=[2])  # catchup, then the parity gate
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
