"""Catalog and digest queries, run unchanged on both servers (source via psql CSV, target via psycopg).

Every query returns text columns only, so both sides compare as lists of strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from migrator.adapters.pgsql import sql

Query = Callable[[str], list[list[str]]]

USER_NS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'"

# Ordinary tables (partition leaves included, parents excluded: their rows live in the leaves), minus
# tables that belong to extensions. binary_ok: no column of a user-defined type, whose binary form
# carries OIDs that differ between servers (enums, composites, arrays of them).
TABLES_SQL = f"""
SELECT n.nspname::text, c.relname::text, pg_relation_size(c.oid)::text,
       greatest(c.reltuples, 0)::bigint::text,
       (EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))::text,
       c.relreplident::text,
       coalesce((SELECT json_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
                '[]')::text,
       (NOT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                      AND (ty.oid >= 16384 OR ty.typelem >= 16384)))::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND {USER_NS}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""

SEQUENCES_SQL = """
SELECT schemaname::text, sequencename::text, coalesce(last_value::text, '')
FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2
"""

# Objects that post-data creates (pre-data creates tables, CHECK constraints, sequences, types...).
STRUCTURE_SQL = f"""
SELECT 'constraints', count(*)::text FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
  WHERE co.contype IN ('p', 'u', 'f', 'x') AND {USER_NS}
UNION ALL
SELECT 'indexes', count(*)::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_NS}
UNION ALL
SELECT 'triggers', count(*)::text FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT tg.tgisinternal AND {USER_NS}
UNION ALL
SELECT 'check constraints', count(*)::text FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
  WHERE co.contype = 'c' AND {USER_NS}
"""

DATABASE_SQL = """
SELECT pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text, d.datcollate::text,
       d.datctype::text, pg_database_size(d.oid)::text, current_setting('wal_level'),
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)::text
FROM pg_database d WHERE d.datname = current_database()
"""

EXTENSIONS_SQL = "SELECT extname::text, extversion::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1"

ROW_ALIAS = "_migrator_row"  # an alias unlikely to clash with a column name (t::text would use the column)


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    bytes: int
    rows_est: int
    has_pk: bool
    replident: str  # d default, f full, n nothing, i index
    columns: tuple[str, ...]
    binary_ok: bool

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    def ident(self) -> str:
        return sql.Identifier(self.schema, self.name).as_string(None)


def tables(query: Query) -> list[TableInfo]:
    return [TableInfo(r[0], r[1], int(r[2]), int(r[3]), r[4] == "true", r[5], tuple(json.loads(r[6])),
                      r[7] == "true") for r in query(TABLES_SQL)]


def sequences(query: Query) -> dict[str, int | None]:
    return {sql.Identifier(r[0], r[1]).as_string(None): (int(r[2]) if r[2] else None) for r in query(SEQUENCES_SQL)}


def structure(query: Query) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in query(STRUCTURE_SQL)}


@dataclass(frozen=True)
class DatabaseInfo:
    owner: str
    encoding: str
    collate: str
    ctype: str
    size: int
    wal_level: str
    superuser: bool


def database(query: Query) -> DatabaseInfo:
    r = query(DATABASE_SQL)[0]
    return DatabaseInfo(r[0], r[1], r[2], r[3], int(r[4]), r[5], r[6] == "true")


def digest_sql(items: list[TableInfo]) -> str:
    """One query: per table, its row count and an order-independent sum of 64-bit row hashes."""
    parts = []
    for t in items:
        parts.append(sql.SQL(
            "SELECT {label}::text, count(*)::text, "
            "coalesce(sum(('x' || left(md5({alias}::text), 16))::bit(64)::bigint), 0)::text "
            "FROM ONLY {table} {alias}"
        ).format(label=sql.Literal(t.label), table=sql.Identifier(t.schema, t.name),
                 alias=sql.Identifier(ROW_ALIAS)).as_string(None))
    return " UNION ALL ".join(parts)


def digests(query: Query, items: list[TableInfo]) -> dict[str, tuple[int, str]]:
    if not items:
        return {}
    return {r[0]: (int(r[1]), r[2]) for r in query(digest_sql(items))}


def counts(query: Query, items: list[TableInfo]) -> dict[str, int]:
    if not items:
        return {}
    q = " UNION ALL ".join(
        sql.SQL("SELECT {}::text, count(*)::text FROM ONLY {}").format(
            sql.Literal(t.label), sql.Identifier(t.schema, t.name)).as_string(None) for t in items)
    return {r[0]: int(r[1]) for r in query(q)}


# Materialized views (their rows are compared like a table's when populated).
MATVIEWS_SQL = f"""
SELECT n.nspname::text, c.relname::text, c.relispopulated::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm' AND {USER_NS}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""

# Large objects: how many, and an md5 over each one's oid and the md5 of its contents, in oid order
# (computed in the server; lo_get reads one object at a time into memory).
LARGE_OBJECTS_SQL = """
SELECT count(*)::text, coalesce(md5(string_agg(m.oid::text || ':' || md5(lo_get(m.oid)), ',' ORDER BY m.oid)), '')
FROM pg_catalog.pg_largeobject_metadata m
"""

# Settings of this database ('' as the role) and of roles in it, one element a row, in stored order.
SETTINGS_SQL = """
SELECT coalesce(r.rolname, '')::text, x.item
FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole,
     unnest(s.setconfig) WITH ORDINALITY AS x(item, i)
WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY 1, x.i
"""

COMMENT_SQL = ("SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database "
               "WHERE datname = current_database()")


def matviews(query: Query) -> dict[TableInfo, bool]:
    """{materialized view (as a TableInfo, for the digest): populated}"""
    return {TableInfo(r[0], r[1], 0, 0, False, "n", (), True): r[2] == "true" for r in query(MATVIEWS_SQL)}


def large_objects(query: Query) -> tuple[int, str]:
    r = query(LARGE_OBJECTS_SQL)[0]
    return int(r[0]), r[1]


@dataclass(frozen=True)
class Setting:
    role: str  # '' for the database itself
    name: str
    value: str


def settings(query: Query) -> list[Setting]:
    out = []
    for role, item in query(SETTINGS_SQL):
        name, _, value = item.partition("=")
        out.append(Setting(role, name, value))
    return out


def comment(query: Query) -> str:
    return query(COMMENT_SQL)[0][0]
