"""The application's logins kept out of a target database while postgres.copy fills it, whatever
`existing` says, and let in once the copy is complete and checked.

ALLOW_CONNECTIONS false would keep the copy out too, so it is the CONNECT privilege: revoked from PUBLIC,
the owner and every role granted it (superusers and the copy's own login are not affected), and the
sessions of everyone else ended. The database's ACL before that is recorded in the step's facts first,
so a crash anywhere leaves enough to finish or undo. Once complete, the database gets the source
database's privileges (roles mapped) when the copy created it, or its own earlier privileges plus the
source's explicit grants when it existed before (provisioned with the cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from migrator.adapters.pgsql import sql
from migrator.adapters.postgres import connect

if TYPE_CHECKING:
    from migrator.adapters.postgres import PgConn
    from migrator.steps.postgres.pg_catalog import Query

PRIVILEGES = {"CONNECT", "TEMPORARY", "CREATE"}
Acl = list[list[Any]]  # [grantee ("PUBLIC" for everyone), privilege, grantable]

_ACL_SQL = """
SELECT coalesce(r.rolname, 'PUBLIC')::text, a.privilege_type::text, a.is_grantable::text
FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE d.datname = {name} ORDER BY 1, 2
"""
# The source database's own ACL: whether it was ever changed from the default, its owner, its entries.
SOURCE_ACL_SQL = _ACL_SQL.format(name="current_database()")
SOURCE_EXPLICIT_SQL = ("SELECT (datacl IS NOT NULL)::text, pg_get_userbyid(datdba)::text FROM pg_database "
                       "WHERE datname = current_database()")


def _rows(server: PgConn, statement: Any, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    with connect(server.with_database("postgres")) as c:
        cur = c.execute(statement, params)
        return cur.fetchall() if cur.description else []


def acl_of(server: PgConn, name: str) -> Acl:
    return [[g, p, str(gr).lower() == "true"] for g, p, gr in
            _rows(server, sql.SQL(_ACL_SQL).format(name=sql.Literal(name)))]


def _grantee(name: str) -> Any:
    return sql.SQL("PUBLIC") if name == "PUBLIC" else sql.Identifier(name)


def _revoke_all(server: PgConn, name: str, keep: str | None) -> None:
    """Every privilege on the database revoked from PUBLIC and every grantee but `keep`."""
    for grantee in sorted({g for g, _, _ in acl_of(server, name)} | {"PUBLIC"}):
        if grantee != keep:
            _rows(server, sql.SQL("REVOKE ALL ON DATABASE {} FROM {} CASCADE").format(sql.Identifier(name),
                                                                                     _grantee(grantee)))


def keep_out(server: PgConn, name: str) -> int:
    """Nobody but superusers and this login may connect; other sessions are ended. Idempotent. Returns how
    many sessions were ended."""
    me = _rows(server, "SELECT current_user::text")[0][0]
    _revoke_all(server, name, keep=me)
    ended = _rows(server, "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a JOIN pg_roles r "
                          "ON r.rolname = a.usename WHERE a.datname = %s AND NOT r.rolsuper AND a.usename <> "
                          "current_user AND a.pid <> pg_backend_pid()", (name,))
    return int(ended[0][0])


def set_acl(server: PgConn, name: str, acl: Acl) -> None:
    """The database's privileges made exactly `acl` (grantors aside)."""
    _revoke_all(server, name, keep=None)
    for grantee, privilege, grantable in acl:
        if privilege not in PRIVILEGES:
            raise ValueError(f"not a database privilege: {privilege!r}")
        _rows(server, sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
            sql.SQL(privilege), sql.Identifier(name), _grantee(grantee),
            sql.SQL(" WITH GRANT OPTION" if grantable else "")))


def source_acl(query: Query, map_role: Callable[[str], str], target_owner: str) -> tuple[bool, Acl]:
    """(whether the source's ACL is explicit, its entries with roles mapped; the owner's to the target's)."""
    explicit, owner = query(SOURCE_EXPLICIT_SQL)[0]
    acl = []
    for grantee, privilege, grantable in query(SOURCE_ACL_SQL):
        role = grantee if grantee == "PUBLIC" else target_owner if grantee == owner else map_role(grantee)
        acl.append([role, privilege, grantable == "true"])
    return explicit == "true", acl


def final_acl(before: Acl, created: bool, explicit: bool, source: Acl) -> Acl:
    """A database the copy created gets the source's privileges; one that existed keeps its own, plus the
    source's explicit grants."""
    merged = source if created else before + (source if explicit else [])
    out: Acl = []
    for entry in merged:
        if entry not in out:
            out.append(entry)
    return out
