"""psycopg's SQL composition and error type, for the step modules: they build statements with `sql` and
catch `PgError`, but never import psycopg themselves (client libraries live in adapters/).

`from migrator.adapters.pgsql import sql` at a module's top is free (psycopg is imported when `sql.X` is
first read); `PgError` is psycopg's own class, so read it where it is caught (`pgsql.PgError`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migrator.adapters.lazy import lazy

if TYPE_CHECKING:
    from psycopg import Error as PgError
    from psycopg import sql
else:
    sql = lazy("psycopg.sql")

__all__ = ["PgError", "sql"]


def __getattr__(name: str) -> Any:
    if name == "PgError":
        return lazy("psycopg").Error
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
