"""postgres.copy: schema, then data table by table in parallel, then indexes/constraints and sequences.

Data goes `COPY (SELECT ...) TO STDOUT` on the source (inside its container) straight into
`COPY ... FROM STDIN (FREEZE)` on the target, through this process, never landing on a disk. Each table
is `TRUNCATE` + `COPY` in one target transaction: a table interrupted mid-copy is rolled back by the
server and copied again on resume; completed tables are recorded in facts and skipped. Indexes and
constraints are built once, after loading (faster than maintaining them row by row).

Every table is read in one snapshot exported from a transaction held open on the source, so the copy is
the whole database as of one instant even while it is being written (foreign keys hold on the target).
A table larger than `split_mb` is read as block ranges (`ctid` ranges: a TID range scan, PostgreSQL 14+)
by several sessions in parallel; its target table is truncated first, and a table whose pieces did not
all finish is truncated and copied again on resume. Small tables are read through the session holding
the snapshot, one after another, instead of a `docker exec` each.
"""

from __future__ import annotations

import contextlib
import math
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from migrator.adapters.pgsql import sql
from migrator.adapters.postgres import connect, database_exists
from migrator.errors import GateNotReady, PermanentError
from migrator.steps.base import Check, Plan, Step, step_type
from migrator.steps.postgres import pg_aside as aside
from migrator.steps.postgres import pg_catalog as cat
from migrator.steps.postgres import pg_logins as logins
from migrator.steps.postgres import pg_schema as schema
from migrator.steps.postgres import pg_whole as whole
from migrator.steps.postgres.pg_common import DbParams, source_of, target_conn

if TYPE_CHECKING:
    from migrator.adapters.pgsource import PgSource, Snapshot
    from migrator.adapters.postgres import PgConn
    from migrator.runbook.model import RunbookFile
    from migrator.steps.base import Progress, StepContext

CHUNK = 1 << 18
SMALL_TABLE_BYTES = 8 << 20  # on disk; read whole through the snapshot's session (held in memory)


class CopyParams(DbParams):
    jobs: int = Field(default=2, ge=1, le=16)
    analyze: bool = True  # ANALYZE after loading, so the planner has statistics from the first query
    # Tables larger than this (on disk) are copied as up to `jobs` block ranges in parallel; 0: never.
    split_mb: int = Field(default=256, ge=0)
    # A target database that already has tables: refuse it, or set it aside (renamed
    # <db>_before_<step id>, kept; rollback puts it back) and copy into a new one. Either way the
    # application's logins are kept out until the copy is complete (see pg_logins).
    existing: Literal["refuse", "set-aside"] = "refuse"


@dataclass(frozen=True)
class Piece:
    """A table, or one block range of it."""

    table: cat.TableInfo
    count: int = 1  # how many pieces the table is cut into
    first_block: int = 0
    end_block: int | None = None  # exclusive; None: to the end (blocks added since the size was read)
    via_session: bool = False  # a small table, read whole through the snapshot's session

    @property
    def whole(self) -> bool:
        return self.count == 1


def pieces_of(t: cat.TableInfo, parts: int, block_size: int) -> list[Piece]:
    blocks = max(1, math.ceil(t.bytes / block_size))
    parts = max(1, min(parts, blocks))
    if parts == 1:
        return [Piece(t)]
    step = math.ceil(blocks / parts)
    bounds = [i * step for i in range(parts) if i * step < blocks]
    return [Piece(t, len(bounds), lo, bounds[i + 1] if i + 1 < len(bounds) else None) for i, lo in enumerate(bounds)]


def copy_piece(source: PgSource, target: PgConn, piece: Piece, snapshot: Snapshot | None,
               on_bytes: Progress) -> tuple[int, int]:
    """A whole table atomically (TRUNCATE + COPY FREEZE in one transaction), or one block range of a
    table truncated beforehand. Returns (rows, bytes)."""
    t = piece.table
    fmt = sql.SQL("binary" if t.binary_ok else "text")
    table = sql.Identifier(t.schema, t.name)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in t.columns)
    where: sql.Composable = sql.SQL("")
    if not piece.whole:
        where = sql.SQL(" WHERE ctid >= {}::tid").format(sql.Literal(f"({piece.first_block},0)"))
        if piece.end_block is not None:
            where += sql.SQL(" AND ctid < {}::tid").format(sql.Literal(f"({piece.end_block},0)"))
    src = sql.SQL("COPY (SELECT {} FROM ONLY {}{}) TO STDOUT (FORMAT {})").format(cols, table, where, fmt)
    # FREEZE needs the table truncated in the same transaction: only a whole table can have it.
    opts = sql.SQL("FORMAT {}, FREEZE" if piece.whole else "FORMAT {}").format(fmt)
    dst = (sql.SQL("COPY {} ({}) FROM STDIN ({})").format(table, cols, opts) if t.columns
           else sql.SQL("COPY {} FROM STDIN ({})").format(table, opts))
    moved = 0
    with connect(target, autocommit=False) as conn:
        with conn.cursor() as cur:
            cur.execute("SET synchronous_commit = off")
            if piece.whole:
                cur.execute(sql.SQL("TRUNCATE ONLY {}").format(table))
            if piece.via_session and snapshot is not None:
                data = snapshot.read_whole(src.as_string(None))
                with cur.copy(dst) as cp:
                    cp.write(data)
                moved = len(data)
                on_bytes.advance(moved)
            else:
                with cur.copy(dst) as cp, source.copy_out(src.as_string(None), snapshot) as s:
                    while chunk := s.read(CHUNK):
                        cp.write(chunk)
                        moved += len(chunk)
                        on_bytes.advance(len(chunk))
                    source.finish(s, f"COPY {t.label}")
            rows = cur.rowcount
        conn.commit()
    return rows, moved


def truncate(target: PgConn, t: cat.TableInfo) -> None:
    with connect(target) as c:
        c.execute(sql.SQL("TRUNCATE ONLY {}").format(sql.Identifier(t.schema, t.name)))


def apply_schema(ctx: StepContext, p: DbParams, source: PgSource, server: PgConn, section: str,
                 script: str | None = None) -> None:
    """Dump one section from the source (unless given), map owners, apply it on the target in one
    transaction."""
    script = source.dump_schema(section) if script is None else script
    roles = {schema.map_role(r, p.owner_map, p.default_owner) for r in schema.owners_in(script)}
    ensure_roles(ctx, p, server, roles)
    schema.apply_script(server, schema.prepare(script, p.owner_map, p.default_owner))


def ensure_roles(ctx: StepContext, p: DbParams, server: PgConn, roles: set[str]) -> None:
    missing = schema.missing_roles(server, roles)
    if not missing:
        return
    if not p.create_roles:
        raise PermanentError(f"{ctx.step_id}: role(s) {', '.join(missing)} do not exist on the target; map them "
                             "with owner_map/default_owner or set create_roles: true")
    ctx.record(created_roles=sorted(set(ctx.facts.get("created_roles") or []) | set(missing)))
    schema.create_roles(server, missing)


def prepare_database(ctx: StepContext, p: DbParams, source: PgSource, server: PgConn) -> cat.DatabaseInfo:
    info = cat.database(source.query)
    owner = schema.map_role(info.owner, p.owner_map, p.default_owner)
    ensure_roles(ctx, p, server, {owner})
    schema.ensure_database(ctx, server, p.target.database, owner, info)
    return info


def set_sequences(source: PgSource, db: PgConn, margin: int = 0) -> int:
    """setval on the target to the source's values (+ margin): sequences are not data COPY moves."""
    values = cat.sequences(source.query)
    with connect(db) as c:
        for ident, value in values.items():
            if value is not None:
                c.execute(f"SELECT pg_catalog.setval({_lit(ident)}, {int(value) + margin}, true)".encode())
            elif margin:
                c.execute(f"SELECT pg_catalog.setval({_lit(ident)}, {margin}, true)".encode())
    return len(values)


def _lit(text: str) -> str:
    return sql.Literal(text).as_string(None)


def post_data_present(source: PgSource, db: PgConn) -> bool:
    src, dst = cat.structure(source.query), cat.structure(schema.query_of(db))
    return all(dst.get(k, 0) >= v for k, v in src.items())


@step_type("postgres.copy")
class PostgresCopy(Step[CopyParams]):
    """Copy one database from its container on the VPS into its StatefulSet's server; resumable by table."""

    @classmethod
    def check_params(cls, params: Any, runbook: RunbookFile) -> list[tuple[str, str]]:
        env = runbook.environment.source
        # In a container, the copy holds a session per job, one for its snapshot and one for the API.
        if params.source.container and env is not None and params.jobs + 2 > env.ssh.max_sessions:
            return [("jobs", f"{params.jobs} needs {params.jobs + 2} SSH sessions at once; "
                             f"environment.source.ssh.max_sessions is {env.ssh.max_sessions} (at most the VPS "
                             "sshd's MaxSessions): lower jobs or raise both")]
        return []

    def _ends(self) -> tuple[PgSource, PgConn, PgConn]:
        p = self.params
        server = target_conn(self.ctx, p.target, "postgres")
        return source_of(self.ctx, p.source), server, server.with_database(p.target.database)

    def check(self) -> Check:
        f = self.ctx.facts
        if f.get("complete"):
            _, server, _ = self._ends()
            if database_exists(server, self.params.target.database):
                return Check(True, f"copied {len(f.get('tables_done') or [])} tables at {time.ctime(f['complete'])}")
        return Check(False, "not copied yet" if not f.get("tables_done") else
                     f"{len(f['tables_done'])} table(s) copied so far: resuming")

    def plan(self) -> Plan:
        p = self.params
        source, server, _ = self._ends()
        info = cat.database(source.query)
        tabs = cat.tables(source.query)
        exts = [f"{r[0]} {r[1]}" for r in source.query(cat.EXTENSIONS_SQL)]
        nopk = [t.label for t in tabs if not t.has_pk]
        plan = Plan()
        exists = database_exists(server, p.target.database)
        plan.change(f"{'fill existing' if exists else 'create'} database {p.target.database} on "
                    f"{server.host}:{server.port} (owner {schema.map_role(info.owner, p.owner_map, p.default_owner)})")
        plan.change(f"copy {source.label}: {len(tabs)} tables, {_mb(info.size)} on disk, "
                    f"~{sum(t.rows_est for t in tabs)} rows, {p.jobs} in parallel")
        if exts:
            plan.change(f"create extensions first: {', '.join(exts)}")
        if nopk:
            plan.change(f"tables without a primary key (copied as they are): {', '.join(nopk)}")
        plan.changes += self._plan_whole(source)
        split = [t for t in tabs if self._parts(t) > 1]
        if split:
            plan.change("read in block ranges in parallel, in one snapshot: "
                        + ", ".join(f"{t.label} ({_mb(t.bytes)}, {self._parts(t)} pieces)" for t in split))
        if p.existing == "set-aside" and exists and "set_aside" not in self.ctx.facts:
            kept = aside.aside_name(p.target.database, self.ctx.step_id)
            plan.change(f"if {p.target.database} has tables: rename it {kept} (kept; rollback puts it back), "
                        "then copy into a new one; the application's logins kept out until the copy is complete")
        done = self.ctx.facts.get("tables_done") or []
        if done:
            plan.change(f"resume: {len(done)} table(s) already copied are skipped")
        plan.unknowns += ["the duration (throughput of the SSH/docker exec path and of the target's disk)",
                          "whether the target server has the extensions' files installed",
                          "row counts are estimates (pg_class.reltuples) until the copy counts them"]
        return plan

    def _plan_whole(self, source: PgSource) -> list[str]:
        """What comes along besides tables and their rows (and what is left out on purpose)."""
        lines = []
        n_lo = int(source.query("SELECT count(*) FROM pg_largeobject_metadata")[0][0])
        if n_lo:
            lines.append(f"copy {n_lo} large object(s): owners, grants and comments with the schema, contents after "
                         "the tables")
        mvs = cat.matviews(source.query)
        if mvs:
            cold = [t.label for t, populated in mvs.items() if not populated]
            lines.append(f"refresh {len(mvs) - len(cold)} materialized view(s) after loading, in dependency order"
                         + (f"; left unpopulated as in the source: {', '.join(cold)}" if cold else ""))
        sets = cat.settings(source.query)
        if sets:
            skipped = sorted({s.role for s in sets if s.role and self._role_for(s.role) is None})
            lines.append(f"set {len(sets)} database/role setting(s) on {self.params.target.database} once loaded"
                         + (f"; not for roles neither mapped nor on the target: {', '.join(skipped)}" if skipped else ""))
        pubs = [r[0] for r in source.query("SELECT pubname::text FROM pg_publication ORDER BY 1")]
        if pubs:
            lines.append(f"publications are not copied (replication is set up by postgres.replicate): {', '.join(pubs)}")
        return lines

    def _role_for(self, role: str) -> str | None:
        """The target role a source role's settings go to: its owner_map entry, or the same name when the
        target has it; None otherwise (default_owner is for ownership, not for another role's settings)."""
        p = self.params
        if role in p.owner_map:
            return p.owner_map[role]
        _, server, _ = self._ends()
        return None if schema.missing_roles(server, {role}) else role

    def _finish_database(self, source: PgSource, server: PgConn) -> None:
        """Database- and role-level settings and the database's comment, once the data is in (a setting such
        as default_transaction_read_only would stop the copy itself)."""
        ctx = self.ctx
        if ctx.facts.get("settings_done"):
            return
        sets = cat.settings(source.query)
        skipped = whole.apply_settings(server, self.params.target.database, sets, self._role_for)
        if skipped:
            ctx.log.warning("role settings not copied: role neither mapped nor on the target", roles=skipped)
        whole.set_comment(server, self.params.target.database, cat.comment(source.query) or None)
        ctx.record(settings_done=True, settings=len(sets), settings_skipped=skipped)

    def _keep_logins_out(self, server: PgConn) -> None:
        """Again on every attempt (a session that got in between is ended); the ACL before, recorded once."""
        ctx, name = self.ctx, self.params.target.database
        if "acl_before" not in ctx.facts:
            ctx.record(acl_before=logins.acl_of(server, name))
        ended = logins.keep_out(server, name)
        if ended:
            ctx.log.info("sessions on the target ended while it is filled", database=name, sessions=ended)
        ctx.record(logins_out=True)

    def _let_logins_in(self, source: PgSource, server: PgConn) -> None:
        p, ctx = self.params, self.ctx
        f = ctx.facts
        explicit, src = logins.source_acl(source.query, lambda r: schema.map_role(r, p.owner_map, p.default_owner),
                                          f["db_owner"])
        acl = logins.final_acl(f["acl_before"], created=not f["db_existed"], explicit=explicit, source=src)
        ensure_roles(ctx, p, server, {g for g, _, _ in acl if g != "PUBLIC"})
        logins.set_acl(server, p.target.database, acl)
        ctx.record(logins_out=False, acl_after=acl)

    def apply(self) -> None:
        p, ctx = self.params, self.ctx
        source, server, db = self._ends()
        started = time.monotonic()
        lap = _Laps()
        if p.existing == "set-aside":
            aside.set_aside(ctx, server, p.target.database)
        prepare_database(ctx, p, source, server)
        self._keep_logins_out(server)
        tabs = cat.tables(source.query)
        if not ctx.facts.get("pre_done"):
            # A crash after the commit but before the record leaves the tables there: do not apply twice.
            have = {t.label for t in cat.tables(schema.query_of(db))}
            if not {t.label for t in tabs} <= have or not tabs:
                apply_schema(ctx, p, source, db, "pre-data")
            ctx.record(pre_done=True, tables_done=[], rows=0, bytes=0)
        lap("pre_data")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgschema") as background:
            # The post-data script is fetched while the data flows (a pg_dump in the container).
            post = None if ctx.facts.get("post_done") else background.submit(source.dump_schema, "post-data")
            self._copy_tables(source, db, tabs)
            lap("data")
            if post is not None:
                if not post_data_present(source, db):
                    apply_schema(ctx, p, source, db, "post-data", post.result())
                ctx.record(post_done=True)
            lap("post_data")
        set_sequences(source, db)
        lap("sequences")
        if p.analyze:
            with connect(db) as c:
                c.execute("ANALYZE")
            lap("analyze")
        self._finish_database(source, server)
        self.verify()  # the cheap gate, before the application may log in
        ctx.failpoint("before-logins-in")
        self._let_logins_in(source, server)
        ctx.record(complete=time.time(), seconds=round(time.monotonic() - started, 3), phases=lap.seconds)

    def _parts(self, t: cat.TableInfo) -> int:
        split = self.params.split_mb * 1_000_000
        if not split or self.params.jobs < 2:
            return 1
        return min(self.params.jobs, math.ceil(t.bytes / split))

    def _split_supported(self, source: PgSource) -> tuple[bool, int]:
        """TID range scans came with PostgreSQL 14: before, each piece would read the whole table."""
        version, block_size = source.query("SELECT current_setting('server_version_num'), "
                                           "current_setting('block_size')")[0]
        return int(version) >= 140000, int(block_size)

    def _copy_tables(self, source: PgSource, db: PgConn, tabs: list[cat.TableInfo]) -> None:
        ctx = self.ctx
        done = set(ctx.facts.get("tables_done") or [])
        todo = sorted((t for t in tabs if t.label not in done), key=lambda t: -t.bytes)  # biggest first
        if not todo and ctx.facts.get("large_objects_done"):
            return
        with contextlib.ExitStack() as stack:
            snapshot = self._snapshot(stack, source)
            if todo:
                total_b = sum(t.bytes for t in todo)
                bar = ctx.progress(f"copy {self.params.target.database}", total=total_b or None, unit="B")
                rows_bar = ctx.progress(f"rows {self.params.target.database}",
                                        total=sum(t.rows_est for t in todo) or None, unit="rows")
                pieces = self._pieces(source, todo, snapshot is not None)
                self._run_pieces(source, db, pieces, snapshot, bar, rows_bar)
            if not ctx.facts.get("large_objects_done"):
                # In the same snapshot as the rows: a table's oid column and the objects it points to agree.
                n, moved = 0, 0
                if source.query("SELECT count(*) FROM pg_largeobject_metadata")[0][0] != "0":
                    n, moved = whole.copy_large_objects(source, db, snapshot)
                    ctx.log.info("large objects copied", objects=n, bytes=moved)
                ctx.record(large_objects_done=True, large_objects=n, large_object_bytes=moved)
                ctx.failpoint("after-large-objects")

    def _snapshot(self, stack: contextlib.ExitStack[Any], source: PgSource) -> Snapshot | None:
        try:
            return stack.enter_context(source.snapshot())
        except PermanentError as exc:  # e.g. a server that cannot export snapshots: tables whole, one by one
            self.ctx.log.warning("no exported snapshot: each table is read in its own transaction, none split",
                                 error=str(exc))
            return None

    def _pieces(self, source: PgSource, todo: list[cat.TableInfo], in_snapshot: bool) -> list[Piece]:
        if not in_snapshot:
            return [Piece(t) for t in todo]
        supported, block_size = True, 8192
        if any(self._parts(t) > 1 for t in todo):
            supported, block_size = self._split_supported(source)
            if not supported:
                self.ctx.log.warning("source older than PostgreSQL 14: large tables are copied whole")
        pieces: list[Piece] = []
        for t in todo:
            if t.bytes <= SMALL_TABLE_BYTES:
                pieces.append(Piece(t, via_session=True))
            else:
                pieces += pieces_of(t, self._parts(t), block_size) if supported else [Piece(t)]
        return pieces

    def _run_pieces(self, source: PgSource, db: PgConn, pieces: list[Piece], snapshot: Snapshot | None,
                    bar: Progress, rows_bar: Progress) -> None:
        ctx = self.ctx
        left = {p.table.label: p.count for p in pieces}  # pieces still to finish, per table
        moved_so_far: dict[str, tuple[int, int]] = {}
        pool = ThreadPoolExecutor(max_workers=self.params.jobs, thread_name_prefix="pgcopy")
        # Small tables: one after another through the snapshot's session, beside the streams.
        serial = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgcopy-small")
        running: dict[Future[tuple[int, int]], Piece] = {}
        truncated: set[str] = set()
        try:
            for piece in (p for p in pieces if p.via_session):
                running[serial.submit(copy_piece, source, db, piece, snapshot, bar)] = piece
            queue = [p for p in pieces if not p.via_session]
            while queue or running:
                while queue and sum(not p.via_session for p in running.values()) < self.params.jobs:
                    piece = queue.pop(0)
                    if not piece.whole and piece.table.label not in truncated:
                        truncate(db, piece.table)  # rows of an earlier, interrupted attempt
                        truncated.add(piece.table.label)
                    running[pool.submit(copy_piece, source, db, piece, snapshot, bar)] = piece
                finished, _ = wait(list(running), timeout=max(1.0, ctx.remaining()), return_when=FIRST_COMPLETED)
                if not finished:
                    raise PermanentError(f"{ctx.step_id}: copy timed out ({len(running)} piece(s) still copying)")
                for fut in finished:
                    t = running.pop(fut).table
                    rows, moved = fut.result()  # re-raises the worker's error here
                    rows_bar.advance(rows)
                    prev = moved_so_far.get(t.label, (0, 0))
                    moved_so_far[t.label] = (prev[0] + rows, prev[1] + moved)
                    left[t.label] -= 1
                    if left[t.label]:
                        ctx.failpoint("after-piece")  # a split table part-way: resume must not duplicate
                        continue
                    rows, moved = moved_so_far.pop(t.label)
                    f = ctx.facts
                    ctx.record(tables_done=[*(f.get("tables_done") or []), t.label],
                               rows=int(f.get("rows") or 0) + rows, bytes=int(f.get("bytes") or 0) + moved)
                    ctx.log.info("table copied", table=t.label, rows=rows, bytes=moved)
                    ctx.failpoint("after-table")
        finally:
            serial.shutdown(wait=True, cancel_futures=True)
            pool.shutdown(wait=True, cancel_futures=True)

    def verify(self) -> None:
        """A cheap gate (catalog only): every table and index is there. postgres.verify checks the rows."""
        source, _, db = self._ends()
        src = {t.label for t in cat.tables(source.query)}
        dst = {t.label for t in cat.tables(schema.query_of(db))}
        if src - dst:
            raise GateNotReady(f"tables missing on the target: {', '.join(sorted(src - dst))}")
        if not post_data_present(source, db):
            raise GateNotReady("indexes or constraints missing on the target")

    def rollback(self) -> None:
        _, server, _ = self._ends()
        schema.rollback_database(self.ctx, server)
        f = self.ctx.facts
        if f.get("db_existed") and f.get("acl_before"):  # recreated empty: with the privileges it had
            logins.set_acl(server, f["target_database"], f["acl_before"])
        aside.put_back(self.ctx, server, self.params.target.database)

    def rollback_plan(self) -> Plan:
        f = self.ctx.facts
        if "db_existed" not in f:
            return Plan(changes=["nothing: the target database was never touched"])
        name = f["target_database"]
        return Plan(changes=[f"drop database {name} on the target"
                             + (" and recreate it empty (it existed before)" if f["db_existed"] else "")]
                    + ([f"put back {f['set_aside']} as {name}"] if f.get("set_aside") else [])
                    + ([f"drop roles created: {', '.join(f['created_roles'])}"] if f.get("created_roles") else []))

    def report(self) -> dict[str, Any]:
        f = self.ctx.facts
        return {"tables": len(f.get("tables_done") or []), "rows": f.get("rows"), "bytes": f.get("bytes"),
                "large_objects": f.get("large_objects"), "settings": f.get("settings"),
                "seconds": f.get("seconds"), "phases": f.get("phases")}


class _Laps:
    """Seconds spent in each part of apply(), for the report (where a slow copy spent its time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
