"""mysql.copy / mysql.verify: a MySQL or MariaDB database (WordPress's) into its StatefulSet's server.

The copy is one consistent dump (`--single-transaction`: one InnoDB snapshot, writers keep running)
with routines, triggers and events, streamed out of the source container and straight into the target
server's `mariadb` client, never landing on a disk. The accounts the runbook maps (`users`) are created
on the target from the source's own definitions (password hashes included, never logged) and kept
locked (ACCOUNT LOCK) until the load is complete: the application cannot log in to a half-filled
database. A dump cannot be resumed mid-way (its snapshot dies with the session), so an interrupted copy
is restartable instead: the target database, which this step created, is dropped and loaded again.

mysql.verify compares, computed in each server: the tables, each table's row count and an
order-independent digest of its rows (see adapters.mysql.digest_sql), CHECKSUM TABLE where both servers
run the same version, the routines, triggers and events, and the mapped accounts' grants.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from migrator.adapters.mysql import (
    CHUNK,
    TABLE_MARK,
    MyConn,
    MySource,
    account_of,
    columns_sql,
    digest_sql,
    execute,
    literal,
    programs_sql,
    query,
    quote_account,
    quote_ident,
    tables_sql,
)
from migrator.errors import GateNotReady, PermanentError
from migrator.steps.base import Check, Plan, ReadOnlyStep, Step, StrictModel, step_type
from migrator.steps.postgres.pg_common import container_of, docker_remote, endpoint_address

if TYPE_CHECKING:
    from migrator.adapters.mysql import MyConn, MySource
    from migrator.steps.base import StepContext

MYSQL_PORT = 3306
SYSTEM_SCHEMAS = {"mysql", "information_schema", "performance_schema", "sys"}


class MySourceParams(StrictModel):
    container: str | None = None  # compose service or container name on the VPS: its tools run by docker exec
    endpoint: str | None = None  # or a name in environment.target.endpoints
    host: str | None = None  # or host:port reachable from here (tests)
    port: int = Field(default=MYSQL_PORT, ge=1, le=65535)
    database: str
    user: str = "root"
    password: str | None = None  # ${secrets.NAME}; MYSQL_PWD in the exec's environment, never argv

    @model_validator(mode="after")
    def _one_way(self) -> MySourceParams:
        if len([k for k in ("container", "endpoint", "host") if getattr(self, k)]) != 1:
            raise ValueError("give exactly one of container, endpoint, host")
        return self


class MyTargetParams(StrictModel):
    endpoint: str  # a name in environment.target.endpoints
    database: str
    user: str = "root"
    password: str | None = None


class MyParams(StrictModel):
    source: MySourceParams
    target: MyTargetParams
    # Accounts copied with their password hash and grants, as 'user@host' (host default '%').
    users: list[str] = Field(default_factory=list)


class MyCopyParams(MyParams):
    # A target database that exists and that this step did not create: refuse it, or replace it
    # (phase 5's final copy after the writers' freeze replaces phase 3's).
    existing: Literal["refuse", "replace"] = "refuse"


def source_of(ctx: StepContext, s: MySourceParams) -> MySource:

    if s.container:
        c = container_of(ctx, s.container)
        return MySource.in_container(docker_remote(ctx), c.name, s.user, s.password)
    host, port = endpoint_address(ctx, s.endpoint, MYSQL_PORT) if s.endpoint else (str(s.host), s.port)
    return MySource.local(MyConn(host, port, s.user, s.password))


def target_of(ctx: StepContext, t: MyTargetParams) -> MyConn:

    host, port = endpoint_address(ctx, t.endpoint, MYSQL_PORT)
    return MyConn(host, port, t.user, t.password)


def _target_rows(conn: MyConn, sql: str) -> list[list[str | None]]:
    return [[None if v is None else (v.decode() if isinstance(v, bytes) else str(v)) for v in r]
            for r in query(conn, sql)]


def database_exists(conn: MyConn, name: str) -> bool:
    return bool(_target_rows(conn, f"SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {literal(name)}"))


def _accounts(users: list[str]) -> list[tuple[str, str]]:
    return [account_of(u) for u in users]


def grants_of(rows: list[list[str | None]], source_db: str, target_db: str) -> list[str]:
    """SHOW GRANTS lines on the copied database (renamed where the target's name differs) and global ones;
    grants on other databases stay behind (they belong to those databases' copies)."""
    out = []
    for r in rows:
        g = str(r[0])
        on = g.split(" ON ", 1)[1] if " ON " in g else ""
        if not (on.startswith("*.*") or on.startswith(f"{quote_ident(source_db)}.")):
            continue
        if source_db != target_db:
            g = g.replace(f" ON {quote_ident(source_db)}.", f" ON {quote_ident(target_db)}.")
        out.append(g)
    return out


@step_type("mysql.copy")
class MysqlCopy(Step[MyCopyParams]):
    """A MySQL/MariaDB database from its container into the target server: one consistent dump, with
    routines, triggers, events and the mapped accounts; restartable (the target database is reloaded)."""

    def check(self) -> Check:
        f = self.ctx.facts
        if f.get("complete") and not f.get("loading"):
            if database_exists(target_of(self.ctx, self.params.target), self.params.target.database):
                return Check(True, f"loaded {f.get('tables')} tables at {time.ctime(f['complete'])}")
        if f.get("loading"):
            return Check(False, "an earlier load did not finish: the target database is loaded again")
        return Check(False, "not copied yet")

    def plan(self) -> Plan:
        p = self.params
        src = source_of(self.ctx, p.source)
        server = target_of(self.ctx, p.target)
        tabs = src.query(tables_sql(p.source.database))
        size = sum(int(r[4] or 0) for r in tabs)
        plan = Plan()
        exists = database_exists(server, p.target.database)
        if exists and not self.ctx.facts.get("created_db"):
            plan.change(f"{'replace' if p.existing == 'replace' else 'REFUSED: existing'} database "
                        f"{p.target.database} on {server.label()}")
        plan.change(f"create database {p.target.database} on {server.label()} and load {src.label}/"
                    f"{p.source.database}: {len(tabs)} tables, {size / 1e6:.1f} MB on disk, one consistent dump "
                    "with routines, triggers and events")
        for user, host in _accounts(p.users):
            plan.change(f"account {user}@{host}: created from the source's definition, locked until the load is "
                        "complete, then its grants")
        plan.unknowns += ["the duration (the docker exec path and the target's disk)",
                          "row counts are estimates (information_schema) until verify counts them"]
        return plan

    def apply(self) -> None:
        p, ctx = self.params, self.ctx
        started = time.monotonic()
        src = source_of(ctx, p.source)
        server = target_of(ctx, p.target)
        db = p.target.database
        if database_exists(server, db) and not ctx.facts.get("created_db"):
            has_tables = _target_rows(server, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                                      f"'{db}'")[0][0] != "0"
            if has_tables and p.existing == "refuse":
                raise PermanentError(f"{ctx.step_id}: the target database {db} on {server.label()} already has tables "
                                     "and was not created by this step; drop it, or set existing: replace")
            ctx.record(replaced=True)
        ctx.record(created_db=True, loading=True, target_database=db, complete=None)
        charset = src.query("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
                            f"information_schema.SCHEMATA WHERE SCHEMA_NAME = '{p.source.database}'")
        if not charset:
            raise PermanentError(f"{ctx.step_id}: no database {p.source.database} in {src.label}")
        self._execute(server, f"DROP DATABASE IF EXISTS {quote_ident(db)}",
                      f"CREATE DATABASE {quote_ident(db)} CHARACTER SET {charset[0][0]} COLLATE {charset[0][1]}")
        self._accounts_locked(src, server)
        tables, moved = self._load(src, server.with_database(db))
        self._grants(src, server)
        ctx.record(loading=False, complete=time.time(), tables=tables, bytes=moved,
                   seconds=round(time.monotonic() - started, 3))

    def _execute(self, conn: MyConn, *statements: str) -> None:
        execute(conn, list(statements), self.ctx.step_id)

    def _accounts_locked(self, src: MySource, server: MyConn) -> None:
        """Each mapped account exists on the target and is locked; created from the source's definition."""
        created = list(self.ctx.facts.get("created_users") or [])
        for user, host in _accounts(self.params.users):
            acct = quote_account(user, host)
            have = _target_rows(server, f"SELECT 1 FROM mysql.user WHERE User = {literal(user)} AND Host = {literal(host)}")
            if not have:
                rows = src.query(f"SHOW CREATE USER {acct}")
                if not rows:
                    raise PermanentError(f"{self.ctx.step_id}: no account {user}@{host} on the source")
                created.append(f"{user}@{host}")
                self.ctx.record(created_users=sorted(set(created)))
                self._execute(server, str(rows[0][0]))  # holds the password hash: never logged
            self._execute(server, f"ALTER USER {acct} ACCOUNT LOCK")
        self.ctx.record(locked_users=[f"{u}@{h}" for u, h in _accounts(self.params.users)])

    def _load(self, src: MySource, db: MyConn) -> tuple[int, int]:
        """The dump streamed into the target's client; the per-table failpoint at each table's start."""
        ctx = self.ctx
        bar = ctx.progress(f"load {db.database}", unit="B")
        tables = moved = 0
        tail = b""
        loader_src = MySource.local(db)
        with src.dump(self.params.source.database) as dump, \
                loader_src.open("mariadb", [f"--database={db.database}", "--binary-mode"], stdin=True) as load:
            try:
                while chunk := dump.read(CHUNK):
                    window = tail + chunk
                    marks = window.count(TABLE_MARK)
                    for _ in range(marks):
                        if tables:
                            ctx.failpoint("after-table")
                        tables += 1
                    tail = window[-(len(TABLE_MARK) - 1):]
                    load.write(chunk)
                    moved += len(chunk)
                    bar.advance(len(chunk))
            except (BrokenPipeError, OSError):
                pass  # the loader ended early: its exit status says why
            rc_dump = dump.wait()
            err_dump = dump.stderr_tail().decode(errors="replace").strip()
            try:
                load.close_stdin()
            except (BrokenPipeError, OSError):
                pass
            rc_load = load.wait()
            err_load = load.stderr_tail().decode(errors="replace").strip()
        if rc_dump != 0:
            raise PermanentError(f"{ctx.step_id}: mariadb-dump in {src.label} failed ({rc_dump}): {err_dump[-500:]}")
        if rc_load != 0:
            raise PermanentError(f"{ctx.step_id}: loading into {db.label()} failed ({rc_load}): {err_load[-500:]}")
        ctx.log.info("dump loaded", tables=tables, bytes=moved)
        return tables, moved

    def _grants(self, src: MySource, server: MyConn) -> None:
        p = self.params
        for user, host in _accounts(p.users):
            acct = quote_account(user, host)
            for g in grants_of(src.query(f"SHOW GRANTS FOR {acct}"), p.source.database, p.target.database):
                if g.startswith("GRANT USAGE ON *.*") and "IDENTIFIED" in g:
                    continue  # the account line (with its hash) came with CREATE USER
                self._execute(server, g)
            self._execute(server, f"ALTER USER {acct} ACCOUNT UNLOCK")
        self.ctx.record(locked_users=[])

    def verify(self) -> None:
        """A cheap gate: the load finished and every table and stored program is there (mysql.verify
        compares the rows)."""
        if self.ctx.facts.get("loading"):
            raise GateNotReady("the load did not finish")
        problems = structure_problems(source_of(self.ctx, self.params.source), target_of(self.ctx, self.params.target),
                                      self.params.source.database, self.params.target.database)
        if problems:
            raise GateNotReady("; ".join(problems))

    def rollback(self) -> None:
        f = self.ctx.facts
        server = target_of(self.ctx, self.params.target)
        if f.get("created_db") and f.get("replaced"):
            # It replaced an earlier copy of the same source (the final sync over phase 3's): what it loaded
            # is at least as recent, so it is left in place for that copy's own rollback.
            self.ctx.log.warning("replaced an earlier copy: the database is left in place")
        elif f.get("created_db"):
            self._execute(server, f"DROP DATABASE IF EXISTS {quote_ident(f.get('target_database') or self.params.target.database)}")
        for spec in f.get("created_users") or []:
            user, host = account_of(spec)
            self._execute(server, f"DROP USER IF EXISTS {quote_account(user, host)}")
        self.ctx.record(created_db=False, created_users=[], complete=None, loading=False)

    def rollback_plan(self) -> Plan:
        f = self.ctx.facts
        if not f.get("created_db"):
            return Plan(changes=["nothing: the target database was never touched"])
        changes = [f"leave database {f.get('target_database')} (it replaced an earlier copy of the same source)"
                   if f.get("replaced") else f"drop database {f.get('target_database')} on the target"]
        if f.get("created_users"):
            changes.append(f"drop accounts created: {', '.join(f['created_users'])}")
        return Plan(changes=changes)

    def report(self) -> dict[str, Any]:
        f = self.ctx.facts
        return {"kind": "mysql", "databases": 1 if f.get("complete") else 0, "tables": f.get("tables"),
                "bytes": f.get("bytes"), "seconds": f.get("seconds")}


def structure_problems(src: MySource, dst: MyConn, source_db: str, target_db: str) -> list[str]:
    problems = []
    s_tabs = {r[0] for r in src.query(tables_sql(source_db))}
    d_tabs = {r[0] for r in _target_rows(dst, tables_sql(target_db))}
    if s_tabs - d_tabs:
        problems.append(f"tables missing on the target: {', '.join(sorted(str(t) for t in s_tabs - d_tabs))}")
    s_prog = {r[0] for r in src.query(programs_sql(source_db))}
    d_prog = {r[0] for r in _target_rows(dst, programs_sql(target_db))}
    if s_prog - d_prog:
        problems.append(f"stored programs missing on the target: {', '.join(sorted(str(t) for t in s_prog - d_prog))}")
    return problems


def compare(src: MySource, dst: MyConn, p: MyParams) -> tuple[list[str], dict[str, Any]]:
    """Everything mysql.verify checks; (problems, figures)."""
    sdb, ddb = p.source.database, p.target.database
    problems = structure_problems(src, dst, sdb, ddb)
    s_tabs = {str(r[0]): str(r[1]) for r in src.query(tables_sql(sdb))}
    d_tabs = {str(r[0]) for r in _target_rows(dst, tables_sql(ddb))}
    if d_tabs - set(s_tabs):
        problems.append(f"tables on the target only: {', '.join(sorted(d_tabs - set(s_tabs)))}")
    cols: dict[str, list[str]] = {}
    for t, c in src.query(columns_sql(sdb)):
        cols.setdefault(str(t), []).append(str(c))
    base = sorted(t for t, kind in s_tabs.items() if kind == "BASE TABLE" and t in d_tabs)
    rows = 0
    if base:
        s_dig = src.query(";\n".join(digest_sql(sdb, t, cols.get(t, [])) for t in base) + ";")
        d_dig = [_target_rows(dst, digest_sql(ddb, t, cols.get(t, [])))[0] for t in base]
        for t, s, d in zip(base, s_dig, d_dig, strict=True):
            rows += int(s[0] or 0)
            if s[0] != d[0]:
                problems.append(f"{t}: {s[0]} rows on the source, {d[0]} on the target")
            elif s[1] != d[1]:
                problems.append(f"{t}: the rows' digests differ")
        s_ver = src.query("SELECT VERSION()")[0][0]
        d_ver = _target_rows(dst, "SELECT VERSION()")[0][0]
        if s_ver == d_ver:  # CHECKSUM TABLE depends on the row format: only the same version compares
            names = ", ".join(f"{quote_ident(sdb)}.{quote_ident(t)}" for t in base)
            s_sum = {str(r[0]).split(".", 1)[1]: r[1] for r in src.query(f"CHECKSUM TABLE {names}")}
            names = ", ".join(f"{quote_ident(ddb)}.{quote_ident(t)}" for t in base)
            d_sum = {str(r[0]).split(".", 1)[1]: r[1] for r in _target_rows(dst, f"CHECKSUM TABLE {names}")}
            bad = sorted(t for t in base if s_sum.get(t) != d_sum.get(t))
            if bad:
                problems.append(f"CHECKSUM TABLE differs: {', '.join(bad)}")
    for user, host in _accounts(p.users):
        acct = quote_account(user, host)
        s_g = sorted(g for g in grants_of(src.query(f"SHOW GRANTS FOR {acct}"), sdb, ddb))
        try:
            d_g = sorted(r[0] or "" for r in _target_rows(dst, f"SHOW GRANTS FOR {acct}"))
        except Exception:  # pymysql's "there is no such grant": no such account
            d_g = []
        if s_g != d_g:
            problems.append(f"account {user}@{host}: grants differ on the target"
                            + ("" if d_g else " (no such account)"))
        if d_g and _locked(dst, user, host):
            problems.append(f"account {user}@{host} is still locked on the target")
    return problems, {"tables": len(base), "rows": rows}


def _locked(conn: MyConn, user: str, host: str) -> bool:
    """MariaDB keeps the lock in mysql.global_priv; MySQL in mysql.user.account_locked."""
    where = f"User = {literal(user)} AND Host = {literal(host)}"
    try:
        rows = _target_rows(conn, f"SELECT JSON_VALUE(Priv, '$.account_locked') FROM mysql.global_priv WHERE {where}")
    except Exception:  # not MariaDB
        rows = _target_rows(conn, f"SELECT account_locked FROM mysql.user WHERE {where}")
    return bool(rows) and str(rows[0][0]).lower() in ("true", "1", "y")


@step_type("mysql.verify")
class MysqlVerify(ReadOnlyStep[MyParams]):
    """Parity of a MySQL/MariaDB database: tables, rows (counts and digests computed in each server),
    CHECKSUM TABLE, stored programs and the mapped accounts' grants."""

    _figures: dict[str, Any] | None = None

    def verify(self) -> None:
        p = self.params
        problems, figures = compare(source_of(self.ctx, p.source), target_of(self.ctx, p.target), p)
        if problems:
            raise GateNotReady("; ".join(problems))
        self._figures = figures
        self.ctx.journal("mysql parity", **figures)

    def report(self) -> dict[str, Any]:
        return dict(self._figures or {})
