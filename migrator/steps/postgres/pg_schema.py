"""Schema on the target: the database itself, roles, owner mapping, and applying pg_dump's SQL.

Each section is applied in one transaction, so a crash leaves it either wholly there or not at all.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from migrator.adapters.postgres import connect, database_exists, role_exists, rows
from migrator.errors import PermanentError
from migrator.steps.postgres import pg_catalog as cat

if TYPE_CHECKING:
    from migrator.adapters.postgres import PgConn

_OWNER = re.compile(r'^(ALTER .+ OWNER TO )("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*);$')
# pg_dump 15.14+ fences its script with \restrict/\unrestrict (psql meta-commands): not SQL, dropped.
_META_OK = ("\\restrict ", "\\unrestrict ")


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def owners_in(script: str) -> set[str]:
    return {_unquote(m.group(2)) for line in script.splitlines() if (m := _OWNER.match(line))}


def map_role(role: str, owner_map: dict[str, str], default_owner: str | None) -> str:
    if role in owner_map:
        return owner_map[role]
    if role.startswith("pg_"):
        return role  # built-in roles exist everywhere
    return default_owner or role


def prepare(script: str, owner_map: dict[str, str], default_owner: str | None) -> str:
    """pg_dump SQL with owners mapped and psql meta-commands removed."""
    from migrator.adapters.pgsql import sql

    out = []
    for line in script.splitlines():
        if line.startswith("\\"):
            if line.startswith(_META_OK):
                continue
            raise PermanentError(f"pg_dump output has a psql meta-command the migrator cannot apply: {line[:40]}")
        m = _OWNER.match(line)
        if m:
            role = map_role(_unquote(m.group(2)), owner_map, default_owner)
            line = f"{m.group(1)}{sql.Identifier(role).as_string(None)};"
        out.append(line)
    return "\n".join(out) + "\n"


def apply_script(conn: PgConn, script: str) -> None:
    with connect(conn, autocommit=False) as c:
        with c.cursor() as cur:
            cur.execute("SET maintenance_work_mem = '512MB'")
            cur.execute(script.encode())
        c.commit()


def query_of(conn: PgConn) -> cat.Query:
    """A catalog query function on the target, in the same shape as the source's."""
    def query(text: str) -> list[list[str]]:
        with connect(conn) as c:
            return rows(c, text.encode())

    return query


def user_table_count(conn: PgConn) -> int:
    return len(cat.tables(query_of(conn)))


def missing_roles(server: PgConn, roles: set[str]) -> list[str]:
    with connect(server.with_database("postgres")) as c:
        return sorted(r for r in roles if not role_exists(c, r))


def create_roles(server: PgConn, roles: list[str]) -> None:
    from migrator.adapters.pgsql import sql

    with connect(server.with_database("postgres")) as c:
        for role in roles:
            c.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))


def drop_roles(server: PgConn, roles: list[str]) -> list[str]:
    """Drop roles we created; those still owning something elsewhere are kept (and named)."""
    from migrator.adapters.pgsql import PgError, sql

    kept = []
    with connect(server.with_database("postgres")) as c:
        for role in roles:
            try:
                c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            except PgError:
                kept.append(role)
    return kept


def create_database(server: PgConn, name: str, owner: str, info: cat.DatabaseInfo) -> None:
    """CREATE DATABASE with the source's encoding and locale (template0, so nothing else comes along)."""
    from migrator.adapters.pgsql import sql

    stmt = sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
        sql.Identifier(name), sql.Identifier(owner), sql.Literal(info.encoding), sql.Literal(info.collate),
        sql.Literal(info.ctype))
    with connect(server.with_database("postgres")) as c:
        try:
            c.execute(stmt)
        except Exception as exc:
            raise PermanentError(f"target {server.host}:{server.port}: cannot create database {name}: "
                                 f"{str(exc).strip().splitlines()[0]}") from None


def drop_database(server: PgConn, name: str) -> None:
    from migrator.adapters.pgsql import sql

    with connect(server.with_database("postgres")) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def ensure_database(ctx: Any, server: PgConn, name: str, owner: str, info: cat.DatabaseInfo) -> None:
    """Create the target database if needed, recording first whether it existed (for rollback)."""
    exists = database_exists(server, name)
    if "db_existed" not in ctx.facts:
        if exists:
            n = user_table_count(server.with_database(name))
            if n:
                raise PermanentError(f"target database {name} on {server.host}:{server.port} already has {n} "
                                     "table(s); the copy needs an empty database (drop it, roll back first, or set "
                                     "`existing: set-aside` to keep it aside)")
        ctx.record(db_existed=exists, db_owner=owner, target_database=name)
    if not exists:
        create_database(server, name, owner, info)


def rollback_database(ctx: Any, server: PgConn) -> None:
    """Back to the recorded state: dropped, or recreated empty when it existed (empty) before."""
    facts = ctx.facts
    if "db_existed" not in facts:
        return
    name = facts["target_database"]
    drop_database(server, name)
    if facts["db_existed"]:
        from migrator.adapters.pgsql import sql

        with connect(server.with_database("postgres")) as c:
            c.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                   sql.Identifier(facts["db_owner"])))
    kept = drop_roles(server, list(facts.get("created_roles") or []))
    if kept:
        ctx.log.warning("roles kept: they own objects elsewhere", roles=kept)
