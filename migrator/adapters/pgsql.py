"""psycopg's SQL composition and error type, for the step modules: they build statements with `sql` and
catch `PgError`, but never import psycopg themselves (client libraries live in adapters/)."""

from __future__ import annotations

from psycopg import Error as PgError
from psycopg import sql

__all__ = ["PgError", "sql"]
