"""Schema on the target: the database itself, roles, owner mapping, and applying pg_dump's SQL.

Each section is applied in one transaction, so a crash leaves it either wholly there or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from migrator.adapters.pgsql import sql
from migrator.adapters.postgres import connect, database_exists, role_exists, rows
from migrator.errors import PermanentError
from migrator.steps.postgres import pg_catalog as cat

if TYPE_CHECKING:
    from migrator.adapters.postgres import PgConn

_Q = r'"(?:[^"]|"")+"'  # a quoted identifier (pg_dump runs with --quote-all-identifiers)
_ROLE = rf"(?:{_Q}|PUBLIC)"
_ROLES = rf"{_ROLE}(?:, ?{_ROLE})*"
_OWNER = re.compile(rf'^(ALTER .+ OWNER TO )({_Q}|[A-Za-z_][A-Za-z0-9_$]*);$')
# Every other statement of pg_dump's that names roles: grants and revokes (objects, large objects,
# default privileges), the grantor's session, policies, user mappings. Groups r1, r2: role lists.
_ROLE_LINES = [
    re.compile(rf"^(GRANT .* TO )(?P<r1>{_ROLES})((?: WITH GRANT OPTION)?;)$"),
    re.compile(rf"^(REVOKE .* FROM )(?P<r1>{_ROLES})((?: CASCADE)?;)$"),
    re.compile(rf"^(ALTER DEFAULT PRIVILEGES FOR ROLE )(?P<r1>{_Q})(.* (?:TO|FROM) )(?P<r2>{_ROLES})"
               r"((?: WITH GRANT OPTION)?;)$"),
    re.compile(rf"^(SET SESSION AUTHORIZATION )(?P<r1>{_Q})(;)$"),
    re.compile(rf"^(CREATE POLICY {_Q} ON {_Q}\.{_Q}(?: AS \w+)?(?: FOR \w+)? TO )(?P<r1>{_ROLES})"
               r"((?: USING | WITH CHECK |;).*)$"),
    re.compile(rf"^(CREATE USER MAPPING FOR )(?P<r1>{_ROLE})( SERVER .*)$"),
]
_ROLE_ITEM = re.compile(_ROLE)
# pg_dump 15.14+ fences its script with \restrict/\unrestrict (psql meta-commands): not SQL, dropped.
_META_OK = ("\\restrict ", "\\unrestrict ")


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _map_line(line: str, fn: Callable[[str], str]) -> str:
    """`line` with every role it names passed through `fn` (PUBLIC stays PUBLIC)."""
    def one(m: re.Match[str]) -> str:
        item = m.group(0)
        return item if item == "PUBLIC" else sql.Identifier(fn(_unquote(item))).as_string(None)

    if m := _OWNER.match(line):
        return f"{m.group(1)}{sql.Identifier(fn(_unquote(m.group(2)))).as_string(None)};"
    for pattern in _ROLE_LINES:
        if m := pattern.match(line):
            roles = {pattern.groupindex[k] for k in ("r1", "r2") if k in pattern.groupindex}
            return "".join(_ROLE_ITEM.sub(one, g) if i in roles else g for i, g in enumerate(m.groups(), 1))
    return line


def owners_in(script: str) -> set[str]:
    """Every role the script names (owners, grantees, grantors, policies' and user mappings' roles)."""
    seen: set[str] = set()

    def note(role: str) -> str:
        seen.add(role)
        return role

    for line in script.splitlines():
        _map_line(line, note)
    return seen


def map_role(role: str, owner_map: dict[str, str], default_owner: str | None) -> str:
    if role in owner_map:
        return owner_map[role]
    if role.startswith("pg_"):
        return role  # built-in roles exist everywhere
    return default_owner or role


def prepare(script: str, owner_map: dict[str, str], default_owner: str | None) -> str:
    """pg_dump SQL with roles mapped and psql meta-commands removed."""
    out = []
    refreshing = False
    for line in script.splitlines():
        if line.startswith("REFRESH MATERIALIZED VIEW ") and not refreshing:
            # pg_dump's `SET row_security = off` makes a REFRESH fail on a table whose policies apply to the
            # view's owner (FORCE ROW LEVEL SECURITY); the source's REFRESH ran with them applied, so does this.
            out.append("SET row_security = on;")
            refreshing = True
        if line.startswith("\\"):
            if line.startswith(_META_OK):
                continue
            raise PermanentError(f"pg_dump output has a psql meta-command the migrator cannot apply: {line[:40]}")
        out.append(_map_line(line, lambda r: map_role(r, owner_map, default_owner)))
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
