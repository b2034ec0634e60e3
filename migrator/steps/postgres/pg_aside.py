"""A target database that already has tables, set aside (renamed, kept) so that a copy can start afresh,
and put back by rollback (the application's logins are kept out of the new one by pg_logins).

Two cases need it. An application may fill an empty database by itself before the copy: Keycloak creates
its schema and a master realm as soon as it starts on the StatefulSet's empty `keycloak` database. And a
database copied ahead of the cutover is copied again in the cutover window (`existing: set-aside` on a
second postgres.copy step), its earlier copy kept until the operator drops it.

Nothing is dropped here: the old database is renamed `<name>_before_<step id>` with connections refused
(ALLOW_CONNECTIONS false), and rollback renames it back and lets connections in again.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from migrator.adapters.pgsql import sql
from migrator.adapters.postgres import connect, database_exists
from migrator.errors import PermanentError
from migrator.steps.postgres.pg_schema import user_table_count

if TYPE_CHECKING:
    from migrator.adapters.postgres import PgConn

MAX_IDENT = 63  # bytes in a PostgreSQL identifier


def aside_name(database: str, step_id: str) -> str:
    name = f"{database}_before_{step_id}"
    if len(name.encode()) <= MAX_IDENT:
        return name
    digest = hashlib.sha256(step_id.encode()).hexdigest()[:8]
    return f"{database.encode()[:40].decode(errors='ignore')}_before_{digest}"


def _exec(server: PgConn, statement: Any, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    with connect(server.with_database("postgres")) as c:
        cur = c.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _table_count(server: PgConn, name: str) -> int:
    return user_table_count(server.with_database(name))


def set_aside(ctx: Any, server: PgConn, name: str) -> None:
    """Rename `name` aside when it has tables; recorded in facts as `set_aside` (None: nothing to do).
    Idempotent across crashes: a rename done before the record is recognised by the aside name."""
    if "set_aside" in ctx.facts:
        return
    aside = aside_name(name, ctx.step_id)
    exists, parked = database_exists(server, name), database_exists(server, aside)
    if parked:
        if exists and _table_count(server, name):
            raise PermanentError(f"{ctx.step_id}: both {name} and {aside} exist on {server.host}:{server.port} "
                                 f"with tables; drop or rename one of them (this step keeps {aside} for rollback)")
        ctx.record(set_aside=aside)  # renamed by an attempt that crashed before recording it
        return
    if not exists or not _table_count(server, name):
        ctx.record(set_aside=None)
        return
    ident, new = sql.Identifier(name), sql.Identifier(aside)
    _exec(server, sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident))
    for attempt in range(20):  # sessions that were connecting when connections were refused
        _exec(server, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                      "AND pid <> pg_backend_pid()", (name,))
        try:
            _exec(server, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident, new))
            break
        except Exception as exc:  # ObjectInUse: a backend not gone yet
            if attempt == 19:
                _exec(server, sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(ident))  # as it was
                raise PermanentError(f"{ctx.step_id}: cannot rename {name} to {aside}: "
                                     f"{str(exc).strip().splitlines()[0]}") from None
            time.sleep(0.1)
    ctx.log.info("target database set aside", database=name, kept_as=aside)
    ctx.record(set_aside=aside)


def put_back(ctx: Any, server: PgConn, name: str) -> None:
    """Rollback of set_aside: the kept database takes its name back and accepts connections again (the
    database in its place must have been dropped already)."""
    aside = ctx.facts.get("set_aside")
    if not aside:
        return
    if database_exists(server, aside):
        if database_exists(server, name):
            raise PermanentError(f"{ctx.step_id}: cannot put {aside} back as {name}: {name} exists")
        _exec(server, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(aside), sql.Identifier(name)))
    _exec(server, sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name)))
    ctx.record(set_aside=None)
