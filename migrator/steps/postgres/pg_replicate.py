"""postgres.replicate and postgres.catchup: logical replication for a cutover of seconds.

replicate (ahead of the cutover): the schema on the target, a publication on the source (tables without
a primary key get REPLICA IDENTITY FULL, or the step refuses: `no_pk`), and a subscription on the target
that copies the data and then follows the changes. The TARGET server connects to the source: a container
source is reached through an SSH tunnel whose local end is on this machine, which the target can reach
only when it runs here too (the sandbox). On a real cluster set source.replication_host to an address the
pods can reach (e.g. a private network or a tunnel run next to the cluster); no port is opened here.

catchup (writers frozen): a marker is written in the source's WAL, the step waits until the subscription
has confirmed it (lag zero), sets the target's sequences to the source's values plus a margin, brings
what logical replication does not carry up to date (large objects, by oid and digest: added, rewritten,
unlinked; materialized views: refreshed as populated on the source, emptied where not), then drops the
subscription, the slot and the publication and restores the replica identities it changed. replicate
copies the large objects once after the schema, so the catchup moves only what changed since.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from migrator.adapters.pgsql import sql
from migrator.adapters.postgres import (
    connect,
    conninfo,
    database_exists,
    quiet_session,
    rows,
    write_server_passfile,
)
from migrator.errors import GateNotReady, PermanentError, TemporaryError
from migrator.runbook.loader import params_model
from migrator.steps.base import Check, Facts, Plan, Step, StrictModel, step_type
from migrator.steps.postgres import pg_catalog as cat
from migrator.steps.postgres import pg_schema as schema
from migrator.steps.postgres import pg_whole as whole
from migrator.steps.postgres.pg_common import DbParams, replication_address, source_of, target_conn
from migrator.steps.postgres.pg_copy import apply_schema, ensure_roles, prepare_database, set_sequences

if TYPE_CHECKING:
    from migrator.adapters.pgsource import PgSource
    from migrator.adapters.postgres import PgConn
    from migrator.steps.base import StepContext


class ReplicateFacts(Facts):
    """What postgres.replicate records; postgres.catchup reads `replica_full` back to undo it."""

    # Tables without a primary key, set to REPLICA IDENTITY FULL for the replication (by label).
    replica_full: list[str] = Field(default_factory=list)


class ReplicateParams(DbParams):
    name: str | None = None  # publication, subscription and slot name; default migrator_<database>
    # Tables without a primary key: `full` sets REPLICA IDENTITY FULL on the source (updates and deletes
    # then carry the whole old row), `fail` refuses and lists them.
    no_pk: Literal["full", "fail"] = "full"


def repl_name(p: ReplicateParams) -> str:
    return p.name or "migrator_" + re.sub(r"[^a-z0-9_]", "_", p.target.database.lower())[:40]


def _id(*names: str) -> str:
    return sql.Identifier(*names).as_string(None)


def _lit(text: str) -> str:
    return sql.Literal(text).as_string(None)


def _target_rows(db: PgConn, query: str, *params: Any) -> list[list[str]]:
    with connect(db) as c:
        return rows(c, query.encode(), params or None)


def subscription_exists(db: PgConn, name: str) -> bool:
    # pg_subscription is shared by all databases: only this database's subscription can be dropped here.
    return bool(_target_rows(db, "SELECT 1 FROM pg_subscription WHERE subname = %s AND subdbid = "
                                 "(SELECT oid FROM pg_database WHERE datname = current_database())", name))


def set_connection(ctx: StepContext, p: ReplicateParams, db: PgConn, create: bool, copy_data: bool = True) -> None:
    """Create the subscription, or point it at the current tunnel (its port changes between runs)."""
    host, port = replication_address(ctx, p.source)
    where = f"{host}:{port}"
    name = repl_name(p)
    if not create and ctx.facts.get("replication_address") == where:
        return
    with connect(db) as c:
        quiet_session(c)
        # The password goes into a 0600 file on the target server's own disk, never into the SQL text
        # (pg_stat_activity, the server's log on error) nor into pg_subscription.subconninfo.
        passfile = write_server_passfile(c, name, p.source.password)
        info = conninfo(host, port, p.source.user, p.source.database, passfile=passfile)
        if create:
            c.execute(f"CREATE SUBSCRIPTION {_id(name)} CONNECTION {_lit(info)} PUBLICATION {_id(name)} "
                      f"WITH (copy_data = {'true' if copy_data else 'false'}, slot_name = {_lit(name)})".encode())
        else:
            c.execute(f"ALTER SUBSCRIPTION {_id(name)} CONNECTION {_lit(info)}".encode())
            c.execute(f"ALTER SUBSCRIPTION {_id(name)} ENABLE".encode())
    if not ctx.dry_run:
        ctx.record(replication_address=where)


def drop_subscription(db: PgConn, source: PgSource, name: str) -> None:
    """Drop the subscription and its slot; through the connection when it works, else on each side."""
    if subscription_exists(db, name):
        with connect(db) as c:
            try:
                c.execute(f"DROP SUBSCRIPTION {_id(name)}".encode())
            except Exception:
                c.execute(f"ALTER SUBSCRIPTION {_id(name)} DISABLE".encode())
                c.execute(f"ALTER SUBSCRIPTION {_id(name)} SET (slot_name = NONE)".encode())
                c.execute(f"DROP SUBSCRIPTION {_id(name)}".encode())
    with connect(db) as c:
        write_server_passfile(c, name, None)  # the password file removed (even if CREATE never ran)
    deadline = time.monotonic() + 30
    while True:
        state = source.query(f"SELECT active::text FROM pg_replication_slots WHERE slot_name = {_lit(name)}")
        if not state:
            return
        if state[0][0] == "false":
            source.execute(f"SELECT pg_drop_replication_slot({_lit(name)})")
            return
        if time.monotonic() > deadline:
            raise TemporaryError(f"replication slot {name} on the source is still in use after 30 s")
        time.sleep(0.2)


def cleanup_source(source: PgSource, name: str, full: list[str]) -> None:
    source.execute(f"DROP PUBLICATION IF EXISTS {_id(name)}")
    if full:
        by_label = {t.label: t for t in cat.tables(source.query)}
        stmts = [f"ALTER TABLE ONLY {by_label[x].ident()} REPLICA IDENTITY DEFAULT;" for x in full if x in by_label]
        if stmts:
            source.execute("\n".join(stmts))


@step_type("postgres.replicate")
class PostgresReplicate(Step[ReplicateParams]):
    """Start logical replication from the source container into the target (before the cutover)."""

    def _ends(self) -> tuple[PgSource, PgConn, PgConn]:
        p = self.params
        server = target_conn(self.ctx, p.target, "postgres")
        return source_of(self.ctx, p.source), server, server.with_database(p.target.database)

    def _sync_state(self, db: PgConn) -> tuple[int, int, bool]:
        """(tables not yet ready, tables, apply worker running)."""
        name = repl_name(self.params)
        if not database_exists(db.with_database("postgres"), db.database) or not subscription_exists(db, name):
            return (1, 0, False)
        r = _target_rows(db, "SELECT count(*) FILTER (WHERE sr.srsubstate NOT IN ('r', 's')), count(*) "
                             "FROM pg_subscription_rel sr JOIN pg_subscription s ON s.oid = sr.srsubid "
                             "WHERE s.subname = %s", name)[0]
        worker = _target_rows(db, "SELECT 1 FROM pg_stat_subscription WHERE subname = %s AND relid IS NULL "
                                  "AND pid IS NOT NULL", name)
        return int(r[0]), int(r[1]), bool(worker)

    def check(self) -> Check:
        _, _, db = self._ends()
        pending, total, _ = self._sync_state(db)
        if total and not pending:
            if not self.ctx.dry_run:
                set_connection(self.ctx, self.params, db, create=False)
            return Check(True, f"subscription {repl_name(self.params)} has all {total} tables in sync")
        return Check(False, "no subscription yet" if not total else f"{pending} of {total} tables still syncing")

    def plan(self) -> Plan:
        p = self.params
        source, _, _ = self._ends()
        info = cat.database(source.query)
        tabs = cat.tables(source.query)
        nopk = [t.label for t in tabs if not t.has_pk and t.replident not in ("f", "i")]
        name = repl_name(p)
        plan = Plan()
        plan.change(f"create database {p.target.database} on the target with the source's schema "
                    f"({len(tabs)} tables, {info.size / 1e6:.1f} MB)")
        if nopk:
            plan.change(("set REPLICA IDENTITY FULL on the source for tables without a primary key: "
                         if p.no_pk == "full" else "REFUSE (no_pk: fail): tables without a primary key: ")
                        + ", ".join(nopk))
        plan.change(f"create publication {name} on the source and subscription {name} (slot {name}) on the target")
        if info.wal_level != "logical":
            plan.change(f"FAILS: the source has wal_level={info.wal_level}; logical needs a restart of the source")
        if p.source.password is None:
            plan.change("FAILS: source.password is needed: the target server connects to the source over TCP")
        plan.unknowns += ["how long the initial sync takes (the target copies every table, indexes in place)",
                          "WAL kept on the source while the subscription is behind or disconnected",
                          "on a real cluster: whether the pods can reach source.replication_host"]
        return plan

    def apply(self) -> None:
        p, ctx = self.params, self.ctx
        name = repl_name(p)
        source, server, db = self._ends()
        info = prepare_database(ctx, p, source, server)
        if info.wal_level != "logical":
            raise PermanentError(f"{ctx.step_id}: the source has wal_level={info.wal_level}; logical replication "
                                 "needs wal_level=logical (a restart of the source database)")
        if p.source.password is None:
            raise PermanentError(f"{ctx.step_id}: source.password is required: the target connects over TCP")
        tabs = cat.tables(source.query)
        if not ctx.facts.get("schema_done"):
            if not schema.user_table_count(db):
                apply_schema(ctx, p, source, db, "pre-data")
                apply_schema(ctx, p, source, db, "post-data")
            ctx.record(schema_done=True)
        if not ctx.facts.get("large_objects_done"):
            # Their contents now (the schema made them empty); catchup adds what changes after this.
            n, moved = whole.copy_large_objects(source, db, None)
            ctx.record(large_objects_done=True, large_objects=n, large_object_bytes=moved)
        nopk = [t for t in tabs if not t.has_pk and t.replident not in ("f", "i")]
        if nopk and p.no_pk == "fail":
            raise PermanentError(f"{ctx.step_id}: tables without a primary key: {', '.join(t.label for t in nopk)}; "
                                 "add one, or set no_pk: full")
        if nopk:
            ctx.record(replica_full=sorted(set(ctx.facts.get("replica_full") or []) | {t.label for t in nopk}))
            source.execute("\n".join(f"ALTER TABLE ONLY {t.ident()} REPLICA IDENTITY FULL;" for t in nopk))
        ctx.record(name=name)
        if not source.query(f"SELECT 1 FROM pg_publication WHERE pubname = {_lit(name)}"):
            scope = "FOR ALL TABLES" if info.superuser else "FOR TABLE " + ", ".join(t.ident() for t in tabs)
            source.execute(f"CREATE PUBLICATION {_id(name)} {scope}")
        set_connection(ctx, p, db, create=not subscription_exists(db, name))

    def verify(self) -> None:
        _, _, db = self._ends()
        pending, total, worker = self._sync_state(db)
        if not total or pending:
            raise GateNotReady(f"subscription {repl_name(self.params)}: {pending} of {total} tables still syncing")
        if not worker:
            raise GateNotReady(f"subscription {repl_name(self.params)}: no apply worker running (see target's log)")

    def report(self) -> dict[str, Any]:
        """Rows and bytes the initial sync brought (counted on the target once the gate passed)."""
        _, _, db = self._ends()
        with connect(db) as conn:
            tables = conn.execute("SELECT schemaname, relname FROM pg_stat_user_tables").fetchall()
            rows = 0
            for schema_name, table in tables:
                q = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema_name), sql.Identifier(table))
                rows += int((conn.execute(q).fetchone() or (0,))[0])
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return {"tables": len(tables), "rows": rows, "bytes": int(size[0]) if size else 0}

    def rollback(self) -> None:
        f = self.ctx.facts
        source, server, db = self._ends()
        name = f.get("name") or repl_name(self.params)
        if database_exists(server, db.database):
            drop_subscription(db, source, name)
        else:
            drop_subscription(server, source, name)  # no subscription there: only the slot, if any
        cleanup_source(source, name, list(f.get("replica_full") or []))
        schema.rollback_database(self.ctx, server)

    def rollback_plan(self) -> Plan:
        f = self.ctx.facts
        name = f.get("name") or repl_name(self.params)
        changes = [f"drop subscription {name} on the target, slot and publication {name} on the source"]
        if f.get("replica_full"):
            changes.append(f"restore REPLICA IDENTITY DEFAULT on {', '.join(f['replica_full'])}")
        if "db_existed" in f:
            changes.append(f"drop database {f['target_database']} on the target"
                           + (" and recreate it empty" if f["db_existed"] else ""))
        return Plan(changes=changes)


class CatchupParams(StrictModel):
    replicate: str  # the id of the postgres.replicate step (its source, target and names are reused)
    sequence_margin: int = Field(default=1000, ge=0)  # room for rows written after the source's last value
    max_wait_s: float = Field(default=60, gt=0)  # for the subscription to confirm the marker


@step_type("postgres.catchup")
class PostgresCatchup(Step[CatchupParams]):
    """With writers frozen: wait for lag zero, move sequences ahead, remove the replication."""

    def _rp(self) -> ReplicateParams:
        try:
            step = self.ctx.runbook.step(self.params.replicate)
        except KeyError:
            raise PermanentError(f"{self.ctx.step_id}: replicate: no step {self.params.replicate!r}") from None
        if step.spec.uses != "postgres.replicate":
            raise PermanentError(f"{self.ctx.step_id}: replicate: {step.id} is a {step.spec.uses}, "
                                 "not a postgres.replicate step")
        return params_model(step, self.ctx.secret)  # type: ignore[return-value]

    def check(self) -> Check:
        at = self.ctx.facts.get("done")
        return Check(bool(at), f"caught up and replication removed at {time.ctime(at)}" if at else "")

    def plan(self) -> Plan:
        rp = self._rp()
        name = repl_name(rp)
        return Plan(changes=[f"wait until subscription {name} has applied everything the source wrote",
                             f"set the target's sequences to the source's values + {self.params.sequence_margin}",
                             "large objects as on the source (added, rewritten, unlinked by oid and digest); "
                             "materialized views refreshed where the source's are populated, emptied where not",
                             f"drop subscription {name}, slot and publication {name}; restore replica identities"],
                    unknowns=["the lag at that moment (writers must be frozen first)",
                              "how long the materialized views take to refresh (with the writers frozen)"])

    def apply(self) -> None:
        ctx, rp = self.ctx, self._rp()
        name = repl_name(rp)
        server = target_conn(ctx, rp.target, "postgres")
        db = server.with_database(rp.target.database)
        source = source_of(ctx, rp.source)
        started = time.monotonic()
        if not ctx.facts.get("synced_at") and subscription_exists(db, name):
            set_connection(ctx, rp, db, create=False)
            self._wait_lag_zero(source, name)
            ctx.record(synced_at=time.time(), lag_wait_s=round(time.monotonic() - started, 3))
        elif not ctx.facts.get("synced_at"):
            raise PermanentError(f"{ctx.step_id}: no subscription {name} on the target: run {self.params.replicate}")
        set_sequences(source, db, self.params.sequence_margin)
        ctx.record(sequences_set=True)
        if not ctx.facts.get("whole_synced"):
            self._sync_whole(rp, source, server, db)
        drop_subscription(db, source, name)
        cleanup_source(source, name, ctx.facts_as(ReplicateFacts, self.params.replicate).replica_full)
        ctx.record(done=time.time(), seconds=round(time.monotonic() - started, 3))

    def _sync_whole(self, rp: ReplicateParams, source: PgSource, server: PgConn, db: PgConn) -> None:
        """Large objects and materialized views, which the subscription does not carry (idempotent: a
        second run finds nothing to change)."""
        ctx = self.ctx
        owners = {schema.map_role(r[0], rp.owner_map, rp.default_owner)
                  for r in source.query("SELECT DISTINCT pg_get_userbyid(lomowner)::text FROM pg_largeobject_metadata")}
        ensure_roles(ctx, rp, server, owners)
        lo = whole.sync_large_objects(source, db, lambda r: schema.map_role(r, rp.owner_map, rp.default_owner))
        ctx.log.info("large objects brought up to date", added=lo.added, updated=lo.updated, removed=lo.removed,
                     bytes=lo.bytes)
        refreshed, emptied = whole.sync_matviews(source, db)
        ctx.log.info("materialized views brought up to date", refreshed=len(refreshed), emptied=emptied)
        ctx.record(whole_synced=True, large_objects_added=lo.added, large_objects_updated=lo.updated,
                   large_objects_removed=lo.removed, large_object_bytes=lo.bytes,
                   matviews_refreshed=refreshed, matviews_emptied=emptied)

    def _wait_lag_zero(self, source: PgSource, name: str) -> None:
        try:  # a transactional marker: its LSN follows every write committed before the freeze
            lsn = source.query("SELECT pg_logical_emit_message(true, 'migrator', 'catchup')::text")[0][0]
        except PermanentError:
            lsn = source.query("SELECT pg_current_wal_lsn()::text")[0][0]
        deadline = time.monotonic() + min(self.params.max_wait_s, max(1.0, self.ctx.remaining()))
        while True:
            r = source.query(f"SELECT coalesce((confirmed_flush_lsn >= {_lit(lsn)}::pg_lsn)::text, 'false') "
                             f"FROM pg_replication_slots WHERE slot_name = {_lit(name)}")
            if not r:
                raise PermanentError(f"{self.ctx.step_id}: replication slot {name} is gone from the source")
            if r[0][0] == "true":
                return
            if time.monotonic() > deadline:
                raise PermanentError(f"{self.ctx.step_id}: subscription {name} did not confirm {lsn} within "
                                     f"{self.params.max_wait_s:g}s (are the writers frozen? is the tunnel up?)")
            time.sleep(0.05)

    def rollback(self) -> None:
        """Replication back as the replicate step left it, without copying again.

        The engine rolls back in reverse order, so this runs before the writers are started again: the
        source has not changed since the catchup, and `copy_data = false` loses nothing."""
        ctx, rp = self.ctx, self._rp()
        name = repl_name(rp)
        db = target_conn(ctx, rp.target, "postgres").with_database(rp.target.database)
        if subscription_exists(db, name):
            return  # the catchup never got as far as removing it
        source = source_of(ctx, rp.source)
        by_label = {t.label: t for t in cat.tables(source.query)}
        full = [by_label[x] for x in ctx.facts_as(ReplicateFacts, self.params.replicate).replica_full if x in by_label]
        if full:
            source.execute("\n".join(f"ALTER TABLE ONLY {t.ident()} REPLICA IDENTITY FULL;" for t in full))
        if not source.query(f"SELECT 1 FROM pg_publication WHERE pubname = {_lit(name)}"):
            scope = ("FOR ALL TABLES" if cat.database(source.query).superuser
                     else "FOR TABLE " + ", ".join(t.ident() for t in by_label.values()))
            source.execute(f"CREATE PUBLICATION {_id(name)} {scope}")
        set_connection(ctx, rp, db, create=True, copy_data=False)

    def rollback_plan(self) -> Plan:
        name = repl_name(self._rp())
        return Plan(changes=[f"re-create publication {name} on the source and subscription {name} on the target "
                             "(copy_data = false: the writers are still frozen), as the replicate step left them"])

    def report(self) -> dict[str, Any]:
        f = self.ctx.facts
        return {"lag_wait_s": f.get("lag_wait_s"), "seconds": f.get("seconds"),
                "large_objects_added": f.get("large_objects_added"),
                "large_objects_updated": f.get("large_objects_updated"),
                "large_objects_removed": f.get("large_objects_removed"),
                "matviews_refreshed": len(f.get("matviews_refreshed") or [])}
