"""PostgreSQL connections for the migrator: psycopg for the target, libpq environments for pg tools.

Passwords never go into argv: psycopg gets them as a keyword (sent over the wire only), the pg tools
get them as PGPASSWORD in their environment or through a 0600 passfile that is removed afterwards.
Every session uses the same output settings (`SESSION_OPTIONS`) so that `row::text` is identical on
both servers, which the content digests depend on.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.adapters.lazy import lazy
from migrator.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    import psycopg
else:
    psycopg = lazy("psycopg")

# Text output that does not depend on the server's or the client's defaults.
SESSION_GUCS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO,YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}
SESSION_OPTIONS = " ".join(f"-c {k}={v}" for k, v in SESSION_GUCS.items())
APP_NAME = "migrator"


@dataclass(frozen=True)
class PgConn:
    """Where a server is and who we are on it. `password` is held in memory only."""

    host: str
    port: int
    user: str
    database: str
    password: str | None = None

    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    def with_database(self, database: str) -> PgConn:
        return PgConn(self.host, self.port, self.user, database, self.password)

    def kwargs(self) -> dict[str, Any]:
        args: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user, "dbname": self.database,
                                "application_name": APP_NAME, "connect_timeout": 10, "options": SESSION_OPTIONS}
        if self.password is not None:
            args["password"] = self.password
        return args

    def env(self) -> dict[str, str]:
        """libpq environment for pg_dump/psql/pg_restore run locally."""
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGDATABASE": self.database,
               "PGOPTIONS": SESSION_OPTIONS, "PGAPPNAME": APP_NAME, "PGCONNECT_TIMEOUT": "10"}
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def uri(self) -> str:
        """A URI without the password (pgcopydb and friends read it from PGPASSWORD or a passfile)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any PG* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra or {})
    return env


@contextlib.contextmanager
def passfile(*conns: PgConn) -> Iterator[Path]:
    """A 0600 .pgpass for tools that take no PGPASSWORD per connection (two servers, one process)."""
    directory = Path(tempfile.mkdtemp(prefix="migrator-pgpass-"))
    path = directory / "pgpass"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            for c in conns:
                if c.password is not None:
                    esc = c.password.replace("\\", "\\\\").replace(":", "\\:")
                    fh.write(f"{c.host}:{c.port}:*:{c.user}:{esc}\n")
        yield path
    finally:
        path.unlink(missing_ok=True)
        directory.rmdir()


def connect(conn: PgConn, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A psycopg connection; connection failures are temporary (the server may be starting)."""
    try:
        return psycopg.connect(autocommit=autocommit, **conn.kwargs())
    except psycopg.OperationalError as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        if "password authentication failed" in text or "does not exist" in text:
            raise PermanentError(f"postgres {conn.label()}: {text}") from None
        raise TemporaryError(f"postgres {conn.label()}: {text}") from None


def rows(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> list[list[str]]:
    """Run a query and give every value as text ('' for NULL), like the source side's CSV output."""
    with conn.cursor() as cur:
        cur.execute(query, params)
        return [["" if v is None else str(v) for v in row] for row in cur.fetchall()]


def database_exists(server: PgConn, name: str) -> bool:
    with connect(server.with_database("postgres")) as c:
        return bool(rows(c, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


def role_exists(conn: psycopg.Connection[Any], role: str) -> bool:
    return bool(rows(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)))


def conninfo(host: str, port: int, user: str, database: str, password: str | None = None,
             passfile: str | None = None) -> str:
    """A libpq key=value string (for CREATE SUBSCRIPTION), values quoted as libpq wants.

    Prefer `passfile` (see write_server_passfile): a password given here ends up in the SQL text."""
    def q(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    parts = [f"host={q(host)}", f"port={port}", f"user={q(user)}", f"dbname={q(database)}",
             f"application_name={q(APP_NAME)}"]
    if passfile is not None:
        parts.append(f"passfile={q(passfile)}")
    if password is not None:
        parts.append(f"password={q(password)}")
    return " ".join(parts)


def quiet_session(c: psycopg.Connection[Any]) -> None:
    """Keep this session's statements and their parameters out of the server's log, even on error."""
    for setting in ("log_statement = 'none'", "log_min_error_statement = 'panic'",
                    "log_parameter_max_length = 0", "log_parameter_max_length_on_error = 0"):
        try:
            c.execute(f"SET {setting}".encode())
        except Exception:  # a non-superuser may not change them: the password is not in the SQL anyway
            pass


def passfile_line(password: str) -> str:
    """One line of a libpq password file matching any host, port, database and user."""
    if any(ch in password for ch in "\n\r\x01\x02"):
        raise PermanentError("a password with a line break (or \\x01, \\x02) cannot go into a libpq password file")
    return "*:*:*:*:" + password.replace("\\", "\\\\").replace(":", "\\:") + "\n"


def write_server_passfile(c: psycopg.Connection[Any], name: str, password: str | None) -> str:
    """Write a libpq password file on the SERVER's own disk, mode 0600; returns its path there.

    For CREATE SUBSCRIPTION ... CONNECTION '... passfile=PATH': the subscriber's walreceiver reads the
    password from it, so the password is in no SQL text (pg_stat_activity, the server's log, even
    with every statement logged) and not in pg_subscription.subconninfo. With the server's own means
    only: the line goes into a TEMPORARY table (never WAL-logged) as COPY FROM STDIN data, then `COPY ... TO PROGRAM` hands it on stdin to `umask 077; cat > tmp; mv tmp PATH` run by the
    server (lo_export and COPY TO a file create 0644 files, which libpq refuses as a passfile).
    `password=None` removes the file (once the subscription is dropped). Needs a superuser (which
    CREATE SUBSCRIPTION needs on PostgreSQL 15 anyway) and a shell in the server's container.

    Production: the target server runs in a Kubernetes pod; `COPY ... TO PROGRAM` runs inside that pod's
    container as the server's OS user, so the file lands in the data directory on the pod's volume, where
    the walreceiver (the same container) reads it. No kube exec, no Secret mount: the same path as the
    sandbox's local target. The file lives on the volume as long as the subscription (backups of the
    volume taken meanwhile hold it, 0600 like the server's own files)."""
    try:
        return _write_server_passfile(c, name, password)
    except psycopg.Error as exc:
        text = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise PermanentError(f"cannot write the subscription's password file on the target server: {text} "
                             "(a superuser is needed, as for CREATE SUBSCRIPTION)") from None


def _write_server_passfile(c: psycopg.Connection[Any], name: str, password: str | None) -> str:
    path = f"{rows(c, 'SHOW data_directory')[0][0]}/migrator-{name}.pgpass"
    target = _quote_sh(path)
    if password is None:
        c.execute(f"COPY (SELECT 1 WHERE false) TO PROGRAM {_quote_literal(f'rm -f {target}')}".encode())
        return path
    line = passfile_line(password).rstrip("\n")
    c.execute("CREATE TEMPORARY TABLE IF NOT EXISTS migrator_passfile (line text)")
    try:
        c.execute("TRUNCATE migrator_passfile")
        # COPY FROM STDIN: the line travels as COPY data, which no log and no pg_stat_activity shows
        # (a bound parameter would be logged with log_statement = all).
        with c.cursor() as cur, cur.copy("COPY migrator_passfile (line) FROM STDIN") as copy:
            copy.write_row((line,))
        program = f"umask 077 && cat > {_quote_sh(path + '.tmp')} && mv -f {_quote_sh(path + '.tmp')} {target}"
        # CSV with a delimiter and a quote that a password line cannot hold: the line is written as is.
        c.execute(f"COPY migrator_passfile TO PROGRAM {_quote_literal(program)} WITH (FORMAT csv, "
                  "DELIMITER E'\\x02', QUOTE E'\\x01')".encode())
    finally:
        c.execute("DROP TABLE IF EXISTS migrator_passfile")
    return path


def _quote_sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
