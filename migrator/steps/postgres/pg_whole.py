"""What a database holds beyond its schema and its tables' rows, which pg_dump carries and postgres.copy
must too: the contents of large objects (their metadata, owners, ACLs and comments come with pre-data),
database- and role-level settings (`ALTER DATABASE ... SET`, `ALTER ROLE ... IN DATABASE ... SET`: only
`pg_dump --create` prints them), and the database's comment. Materialized views are refreshed by
post-data itself (pg_dump emits REFRESH only for those populated in the source, in dependency order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from migrator.steps.postgres import pg_catalog as cat

if TYPE_CHECKING:
    from migrator.adapters.pgsource import PgSource, Snapshot
    from migrator.adapters.postgres import PgConn

CHUNK = 1 << 18
LO_TABLE = "_migrator_lo"

# Pages straight from pg_largeobject when this role may read it (superusers), each at its byte offset
# (pages are LOBLKSIZE = block_size / 4 bytes; holes stay holes); otherwise each object whole, lo_get.
LO_READABLE_SQL = "SELECT has_table_privilege('pg_catalog.pg_largeobject', 'SELECT')::text"
LO_PAGES_SQL = ("COPY (SELECT loid, pageno::bigint * (current_setting('block_size')::int / 4), data "
                "FROM pg_catalog.pg_largeobject ORDER BY loid, pageno) TO STDOUT (FORMAT binary)")
LO_WHOLE_SQL = ("COPY (SELECT oid, 0::bigint, lo_get(oid) FROM pg_catalog.pg_largeobject_metadata ORDER BY oid) "
                "TO STDOUT (FORMAT binary)")

# Variables whose value is a list of identifiers: each element is given as its own literal
# (as pg_dump's variable_is_guc_list_quote).
LIST_QUOTE = {"local_preload_libraries", "search_path", "session_preload_libraries", "shared_preload_libraries",
              "temp_tablespaces", "unix_socket_directories"}


def copy_large_objects(source: PgSource, db: PgConn, snapshot: Snapshot | None) -> tuple[int, int]:
    """Every large object's contents, in one target transaction: (objects written, bytes). Writing the
    same bytes at the same offsets again is harmless, so a crash before the facts are recorded only costs
    a second pass. Objects pre-data did not create (made on the source after its dump) are created."""
    from migrator.adapters.postgres import connect

    readable = source.query(LO_READABLE_SQL)[0][0] == "true"
    moved = 0
    with connect(db, autocommit=False) as conn:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TEMPORARY TABLE {LO_TABLE} (loid oid, off bigint, data bytea) ON COMMIT DROP")
            with cur.copy(f"COPY {LO_TABLE} FROM STDIN (FORMAT binary)") as cp, \
                    source.copy_out(LO_PAGES_SQL if readable else LO_WHOLE_SQL, snapshot) as s:
                while chunk := s.read(CHUNK):
                    cp.write(chunk)
                    moved += len(chunk)
                source.finish(s, "COPY of the large objects")
            cur.execute(f"SELECT count(lo_create(loid)) FROM (SELECT DISTINCT loid FROM {LO_TABLE}) l WHERE NOT EXISTS "
                        "(SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = l.loid)")
            cur.execute(f"SELECT count(lo_put(loid, off, data)) FROM {LO_TABLE}")
            cur.execute(f"SELECT count(DISTINCT loid) FROM {LO_TABLE}")
            row = cur.fetchone()
        conn.commit()
    return int(row[0]) if row else 0, moved


def split_list(value: str) -> list[str]:
    """A list-valued setting as stored ('app, "$user", public') into its elements (quotes removed)."""
    items, cur, quoted, i = [], "", False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == '"' and value[i + 1:i + 2] == '"':
                cur, i = cur + '"', i + 1
            elif ch == '"':
                quoted = False
            else:
                cur += ch
        elif ch == '"':
            quoted = True
        elif ch == ",":
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    if cur.strip() or items:
        items.append(cur.strip())
    return items


def set_clause(name: str, value: str) -> str:
    """`SET name TO ...` for one stored setting, as pg_dump writes it."""
    from migrator.adapters.pgsql import sql

    values = split_list(value) if name.lower() in LIST_QUOTE else [value]
    return sql.SQL("SET {} TO {}").format(sql.Identifier(*name.split(".")), sql.SQL(", ").join(
        sql.Literal(v) for v in values)).as_string(None)


def apply_settings(server: PgConn, database: str, settings: list[cat.Setting],
                   role_for: Callable[[str], str | None]) -> list[str]:
    """The source's database- and role-in-database settings on the target database (idempotent: SET
    replaces). `role_for` maps a source role to the target's, or None to skip it; returns the roles
    skipped."""
    from migrator.adapters.pgsql import sql
    from migrator.adapters.postgres import connect

    skipped: list[str] = []
    with connect(server.with_database("postgres")) as c:
        for s in settings:
            clause = sql.SQL(set_clause(s.name, s.value))
            if not s.role:
                c.execute(sql.SQL("ALTER DATABASE {} {}").format(sql.Identifier(database), clause))
                continue
            role = role_for(s.role)
            if role is None:
                skipped.append(s.role)
                continue
            c.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} {}").format(sql.Identifier(role), sql.Identifier(database),
                                                                        clause))
    return sorted(set(skipped))


def set_comment(server: PgConn, database: str, comment: str | None) -> None:
    from migrator.adapters.pgsql import sql
    from migrator.adapters.postgres import connect

    with connect(server.with_database("postgres")) as c:
        c.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(database),
                                                                 sql.Literal(comment) if comment else sql.NULL))
