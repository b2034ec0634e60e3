"""What a database holds beyond its schema and its tables' rows, which pg_dump carries and postgres.copy
must too: the contents of large objects (their metadata, owners, ACLs and comments come with pre-data),
database- and role-level settings (`ALTER DATABASE ... SET`, `ALTER ROLE ... IN DATABASE ... SET`: only
`pg_dump --create` prints them), and the database's comment. Materialized views are refreshed by
post-data itself (pg_dump emits REFRESH only for those populated in the source, in dependency order).
After a logical replication (which carries neither), postgres.catchup brings both up to date:
sync_large_objects and sync_matviews.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migrator.adapters.pgsql import sql
from migrator.adapters.postgres import connect, rows
from migrator.steps.postgres import pg_catalog as cat

if TYPE_CHECKING:
    from migrator.adapters.pgsource import PgSource, Snapshot
    from migrator.adapters.postgres import PgConn

CHUNK = 1 << 18
LO_TABLE = "_migrator_lo"

# Pages straight from pg_largeobject when this role may read it (superusers), each at its byte offset
# (pages are LOBLKSIZE = block_size / 4 bytes; holes stay holes); otherwise each object whole, lo_get.
# {only} narrows them to some objects (the final sync after a replication).
LO_READABLE_SQL = "SELECT has_table_privilege('pg_catalog.pg_largeobject', 'SELECT')::text"
LO_PAGES_SQL = ("COPY (SELECT loid, pageno::bigint * (current_setting('block_size')::int / 4), data "
                "FROM pg_catalog.pg_largeobject{only} ORDER BY loid, pageno) TO STDOUT (FORMAT binary)")
LO_WHOLE_SQL = ("COPY (SELECT oid, 0::bigint, lo_get(oid) FROM pg_catalog.pg_largeobject_metadata{only} "
                "ORDER BY oid) TO STDOUT (FORMAT binary)")

# Each large object's oid, the md5 of its contents and its owner (lo_get reads one object at a time).
LO_DIGESTS_SQL = ("SELECT m.oid::text, md5(lo_get(m.oid)), pg_get_userbyid(m.lomowner)::text "
                  "FROM pg_catalog.pg_largeobject_metadata m ORDER BY m.oid")
INV_WRITE = 0x20000  # lo_open's mode for writing (libpq-fs.h)


def _load_contents(source: PgSource, cur: Any, snapshot: Snapshot | None, oids: list[int] | None) -> int:
    """The source's pages (of `oids`, or all) into the transaction's temporary table; bytes moved."""
    readable = source.query(LO_READABLE_SQL)[0][0] == "true"
    only = ""
    if oids is not None:
        only = f" WHERE {'loid' if readable else 'oid'} = ANY ('{{{','.join(str(int(o)) for o in oids)}}}'::oid[])"
    moved = 0
    cur.execute(f"CREATE TEMPORARY TABLE {LO_TABLE} (loid oid, off bigint, data bytea) ON COMMIT DROP")
    with cur.copy(f"COPY {LO_TABLE} FROM STDIN (FORMAT binary)") as cp, \
            source.copy_out((LO_PAGES_SQL if readable else LO_WHOLE_SQL).format(only=only), snapshot) as s:
        while chunk := s.read(CHUNK):
            cp.write(chunk)
            moved += len(chunk)
        source.finish(s, "COPY of the large objects")
    return moved


def copy_large_objects(source: PgSource, db: PgConn, snapshot: Snapshot | None) -> tuple[int, int]:
    """Every large object's contents, in one target transaction: (objects written, bytes). Writing the
    same bytes at the same offsets again is harmless, so a crash before the facts are recorded only costs
    a second pass. Objects pre-data did not create (made on the source after its dump) are created."""
    with connect(db, autocommit=False) as conn:
        with conn.cursor() as cur:
            moved = _load_contents(source, cur, snapshot, None)
            cur.execute(f"SELECT count(lo_create(loid)) FROM (SELECT DISTINCT loid FROM {LO_TABLE}) l WHERE NOT EXISTS "
                        "(SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = l.loid)")
            cur.execute(f"SELECT count(lo_put(loid, off, data)) FROM {LO_TABLE}")
            cur.execute(f"SELECT count(DISTINCT loid) FROM {LO_TABLE}")
            row = cur.fetchone()
        conn.commit()
    return int(row[0]) if row else 0, moved


@dataclass(frozen=True)
class LoSync:
    added: int
    updated: int
    removed: int
    bytes: int


def sync_large_objects(source: PgSource, db: PgConn, owner_for: Callable[[str], str]) -> LoSync:
    """Make the target's large objects the source's, by oid, compared by the md5 of their contents: add
    the new ones (owned by `owner_for(source owner)`), rewrite the changed ones, unlink the removed ones;
    one target transaction. Logical replication carries none of them (pg_largeobject is a catalog).
    Grants and comments of an object added after the schema was copied are not carried."""

    src = {int(r[0]): (r[1], r[2]) for r in source.query(LO_DIGESTS_SQL)}
    with connect(db, autocommit=False) as conn:
        dst = {int(r[0]): r[1] for r in rows(conn, LO_DIGESTS_SQL.encode())}
        added = sorted(set(src) - set(dst))
        changed = sorted(o for o in set(src) & set(dst) if src[o][0] != dst[o])
        removed = sorted(set(dst) - set(src))
        moved = 0
        with conn.cursor() as cur:
            for oid in removed:
                cur.execute("SELECT lo_unlink(%s)", (oid,))
            for oid in changed:  # emptied, then written like a new one (holes stay holes)
                cur.execute("SELECT lo_truncate64(lo_open(%s, %s), 0)", (oid, INV_WRITE))
            for oid in added:
                cur.execute("SELECT lo_create(%s)", (oid,))
                cur.execute(sql.SQL("ALTER LARGE OBJECT {} OWNER TO {}").format(
                    sql.SQL(str(oid)), sql.Identifier(owner_for(src[oid][1]))))
            if added or changed:
                moved = _load_contents(source, cur, None, added + changed)
                cur.execute(f"SELECT count(lo_put(loid, off, data)) FROM {LO_TABLE}")
        conn.commit()
    return LoSync(len(added), len(changed), len(removed), moved)


REFRESH_RE = re.compile(r"^REFRESH MATERIALIZED VIEW .+;$", re.MULTILINE)


def sync_matviews(source: PgSource, db: PgConn) -> tuple[list[str], list[str]]:
    """Materialized views as on the source once the data is in: each one unpopulated there is emptied
    (WITH NO DATA), then each one populated there is refreshed, with the REFRESH statements of the
    source's own post-data dump (those pg_dump emits: the populated ones, in dependency order).
    Logical replication carries no refresh. Returns (refreshed, emptied) labels."""
    src = cat.matviews(source.query)
    with connect(db) as c:
        dst = {t.label: pop for t, pop in cat.matviews(lambda q: rows(c, q.encode())).items()}
    emptied = [t for t, pop in src.items() if not pop and dst.get(t.label)]
    refresh = REFRESH_RE.findall(source.dump_schema("post-data")) if any(src.values()) else []
    with connect(db, autocommit=False) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_catalog.set_config('search_path', '', true)")  # as pg_restore runs them
            for t in emptied:
                cur.execute(f"REFRESH MATERIALIZED VIEW {t.ident()} WITH NO DATA".encode())
            for stmt in refresh:
                cur.execute(stmt.encode())
        conn.commit()
    return [s[len("REFRESH MATERIALIZED VIEW "):-1] for s in refresh], [t.label for t in emptied]


# Variables whose value is a list of identifiers: each element is given as its own literal
# (as pg_dump's variable_is_guc_list_quote).
LIST_QUOTE = {"local_preload_libraries", "search_path", "session_preload_libraries", "shared_preload_libraries",
              "temp_tablespaces", "unix_socket_directories"}


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
    values = split_list(value) if name.lower() in LIST_QUOTE else [value]
    return sql.SQL("SET {} TO {}").format(sql.Identifier(*name.split(".")), sql.SQL(", ").join(
        sql.Literal(v) for v in values)).as_string(None)


def apply_settings(server: PgConn, database: str, settings: list[cat.Setting],
                   role_for: Callable[[str], str | None]) -> list[str]:
    """The source's database- and role-in-database settings on the target database (idempotent: SET
    replaces). `role_for` maps a source role to the target's, or None to skip it; returns the roles
    skipped."""

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

    with connect(server.with_database("postgres")) as c:
        c.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(database),
                                                                 sql.Literal(comment) if comment else sql.NULL))
