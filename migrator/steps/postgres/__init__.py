"""postgres.* step types: copy, verify, replicate, catchup (modules imported here so they register).

Light at import time: psycopg, paramiko and docker are imported inside functions only.
"""

from __future__ import annotations

from migrator.steps.postgres import pg_copy, pg_replicate, pg_verify

__all__ = ["pg_copy", "pg_replicate", "pg_verify"]
