"""An independent checker of a database copy: nothing here uses the migrator's own catalog or digest code.

It compares, between a source and a target database:
- the schema, as `pg_dump --schema-only --create` prints it on each side (roles, owners, grants, default
  privileges, comments, database and role settings included), normalised only for the database's name
  and pg_dump's comment lines; publications and subscriptions are left out (postgres.copy leaves them out
  on purpose);
- every table's and materialized view's rows (a sha256 over the sorted text of each row, and the count),
  and each materialized view's populated state;
- the large objects: oid, owner, ACL, comment and an md5 of the contents;
- every sequence's last_value and is_called.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from typing import Any

from tests.postgres.cluster import BIN, Cluster

RELATIONS = """
SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind::text, c.relispopulated
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
ORDER BY 2
"""

LARGE_OBJECTS = """
SELECT m.oid::text, pg_get_userbyid(m.lomowner)::text, coalesce(m.lomacl::text, ''),
       coalesce(obj_description(m.oid, 'pg_largeobject'), ''), md5(lo_get(m.oid))
FROM pg_largeobject_metadata m ORDER BY m.oid
"""

SEQUENCES = """
SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
"""

SETTINGS = """
SELECT coalesce(r.rolname, ''), s.setconfig::text FROM pg_db_role_setting s
LEFT JOIN pg_roles r ON r.oid = s.setrole
WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1
"""


def schema_dump(cluster: Cluster, database: str) -> list[str]:
    """pg_dump's schema of `database`, with its name replaced by DB and comment lines dropped."""
    conn = cluster.conn(database)
    out = subprocess.run([str(BIN / "pg_dump"), "--schema-only", "--create", "--no-publications",
                          "--no-subscriptions", "-d", database], check=True, capture_output=True, text=True,
                         env={"PGHOST": conn.host, "PGPORT": str(conn.port), "PGUSER": conn.user,
                              "PGPASSWORD": cluster.password}).stdout
    name = re.compile(rf'(?<![\w"]){re.escape(database)}(?![\w"])|"{re.escape(database)}"')
    lines = []
    for line in out.splitlines():
        if not line.strip() or line.startswith("--") or line.startswith(("\\restrict", "\\unrestrict")):
            continue
        lines.append(name.sub("DB", line))
    return lines


def _rows(cluster: Cluster, database: str, query: str) -> list[tuple[Any, ...]]:
    return cluster.sql(query, database)


def relations(cluster: Cluster, database: str) -> dict[str, str]:
    """{relation: 'unpopulated' | '<rows> <sha256 of the sorted row texts>'}"""
    out = {}
    for _oid, name, kind, populated in _rows(cluster, database, RELATIONS):
        if kind == "m" and not populated:
            out[name] = "unpopulated"
            continue
        texts = sorted(r[0] for r in _rows(cluster, database, f"SELECT t::text FROM ONLY {name} t"))
        out[name] = f"{len(texts)} {hashlib.sha256(chr(10).join(texts).encode()).hexdigest()}"
    return out


def large_objects(cluster: Cluster, database: str) -> list[tuple[Any, ...]]:
    return _rows(cluster, database, LARGE_OBJECTS)


def sequences(cluster: Cluster, database: str) -> dict[str, tuple[Any, ...]]:
    return {name: _rows(cluster, database, f"SELECT last_value, is_called FROM {name}")[0]
            for (name,) in _rows(cluster, database, SEQUENCES)}


def differences(src: Cluster, source_db: str, dst: Cluster, target_db: str) -> list[str]:
    """Everything that differs, one line each (empty: the target is a faithful copy)."""
    import difflib

    found: list[str] = []
    a, b = schema_dump(src, source_db), schema_dump(dst, target_db)
    if a != b:
        diff = [d for d in difflib.unified_diff(a, b, "source", "target", n=0, lineterm="")
                if d[:1] in "+-" and not d.startswith(("+++", "---"))]
        found += [f"schema: {d}" for d in diff]
    ra, rb = relations(src, source_db), relations(dst, target_db)
    for name in sorted(set(ra) | set(rb)):
        if ra.get(name) != rb.get(name):
            found.append(f"relation {name}: source {ra.get(name, 'missing')}, target {rb.get(name, 'missing')}")
    la, lb = {r[0]: r[1:] for r in large_objects(src, source_db)}, {r[0]: r[1:] for r in large_objects(dst, target_db)}
    for oid in sorted(set(la) | set(lb), key=int):
        if la.get(oid) != lb.get(oid):
            found.append(f"large object {oid}: source {la.get(oid, 'missing')}, target {lb.get(oid, 'missing')}")
    sa, sb = sequences(src, source_db), sequences(dst, target_db)
    for name in sorted(set(sa) | set(sb)):
        if sa.get(name) != sb.get(name):
            found.append(f"sequence {name}: source {sa.get(name, 'missing')}, target {sb.get(name, 'missing')}")
    ta, tb = _rows(src, source_db, SETTINGS), _rows(dst, target_db, SETTINGS)
    if ta != tb:
        found.append(f"database settings: source {ta}, target {tb}")
    return found


def counts(cluster: Cluster, database: str) -> dict[str, int]:
    """How many objects of each kind the database holds (for the report)."""
    q = """
    WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema')
                AND nspname !~ '^pg_(toast|temp)'),
         ext AS (SELECT objid FROM pg_depend WHERE deptype = 'e')
    SELECT k, n FROM (
      SELECT 'relkind ' || relkind::text AS k, count(*) AS n FROM pg_class WHERE relnamespace IN (SELECT oid FROM ns)
        AND oid NOT IN (SELECT objid FROM ext) GROUP BY relkind
      UNION ALL SELECT 'unlogged tables', count(*) FROM pg_class WHERE relpersistence = 'u' AND relkind = 'r'
        AND relnamespace IN (SELECT oid FROM ns)
      UNION ALL SELECT 'table partitions', count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE c.relispartition AND c.relkind IN ('r', 'p')
      UNION ALL SELECT 'inheritance children', count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE NOT c.relispartition
      UNION ALL SELECT 'constraints ' || contype::text, count(*) FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ns)
        GROUP BY contype
      UNION ALL SELECT 'functions/procedures/aggregates', count(*) FROM pg_proc WHERE pronamespace IN (SELECT oid FROM ns)
        AND oid NOT IN (SELECT objid FROM ext)
      UNION ALL SELECT 'triggers', count(*) FROM pg_trigger WHERE NOT tgisinternal
      UNION ALL SELECT 'event triggers', count(*) FROM pg_event_trigger
      UNION ALL SELECT 'rules', count(*) FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
        WHERE r.rulename <> '_RETURN' AND c.relnamespace IN (SELECT oid FROM ns)
      UNION ALL SELECT 'policies', count(*) FROM pg_policy
      UNION ALL SELECT 'types (enum/composite/range/domain)', count(*) FROM pg_type WHERE typnamespace IN (SELECT oid FROM ns)
        AND oid NOT IN (SELECT objid FROM ext) AND (typtype IN ('e', 'r', 'd')
        OR (typtype = 'c' AND typrelid IN (SELECT oid FROM pg_class WHERE relkind = 'c')))
      UNION ALL SELECT 'collations', count(*) FROM pg_collation WHERE collnamespace IN (SELECT oid FROM ns)
      UNION ALL SELECT 'text search configs', count(*) FROM pg_ts_config WHERE cfgnamespace IN (SELECT oid FROM ns)
      UNION ALL SELECT 'operators', count(*) FROM pg_operator WHERE oprnamespace IN (SELECT oid FROM ns)
        AND oid NOT IN (SELECT objid FROM ext)
      UNION ALL SELECT 'extensions', count(*) FROM pg_extension WHERE extname <> 'plpgsql'
      UNION ALL SELECT 'statistics objects', count(*) FROM pg_statistic_ext
      UNION ALL SELECT 'large objects', count(*) FROM pg_largeobject_metadata
      UNION ALL SELECT 'comments', count(*) FROM pg_description WHERE objoid >= 16384
      UNION ALL SELECT 'shared comments', count(*) FROM pg_shdescription WHERE objoid >= 16384
      UNION ALL SELECT 'default privileges', count(*) FROM pg_default_acl
      UNION ALL SELECT 'foreign servers', count(*) FROM pg_foreign_server
      UNION ALL SELECT 'user mappings', count(*) FROM pg_user_mapping
      UNION ALL SELECT 'database/role settings', count(*) FROM pg_db_role_setting
        WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
      UNION ALL SELECT 'relations with grants', count(*) FROM pg_class WHERE relacl IS NOT NULL
        AND relnamespace IN (SELECT oid FROM ns)
    ) x WHERE n > 0 ORDER BY k
    """
    return {k: int(n) for k, n in cluster.sql(q, database)}
