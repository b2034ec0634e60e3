"""MySQL/MariaDB for the migrator: PyMySQL for the target, the server's own tools for the source.

The source is read where it lives: `mariadb-dump`/`mariadb` (or their `mysql*` names) run next to the
server (docker exec in its container on the VPS, or locally for a server reachable as host:port) and
their output is streamed back. Passwords never go into argv: the tools run in a container get
MYSQL_PWD in the exec's environment; the tools run here read a 0600 defaults-extra-file removed
afterwards; PyMySQL sends it over the wire only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.adapters.lazy import lazy
from migrator.adapters.procstream import ExecStream, LocalStream, ProcStream
from migrator.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    import pymysql
else:
    pymysql = lazy("pymysql")

CHUNK = 1 << 18
# The dump: one consistent snapshot (InnoDB), every stored program, binary columns in hex (the stream
# stays text), no CREATE DATABASE/USE (the target database may have another name).
DUMP_OPTIONS = ["--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob",
                "--default-character-set=utf8mb4", "--skip-lock-tables", "--no-create-db", "--add-drop-table",
                "--skip-comments", "--tz-utc"]
# What the dump writes before each table (with --skip-comments too): where the per-table failpoint sits.
TABLE_MARK = b"DROP TABLE IF EXISTS `"


@dataclass(frozen=True)
class MyConn:
    """Where a server is and who we are on it. `password` is held in memory only."""

    host: str
    port: int
    user: str
    password: str | None = None
    database: str | None = None

    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}" + (f"/{self.database}" if self.database else "")

    def with_database(self, database: str | None) -> MyConn:
        return MyConn(self.host, self.port, self.user, self.password, database)


def connect(conn: MyConn, autocommit: bool = True) -> Any:
    try:
        return pymysql.connect(host=conn.host, port=conn.port, user=conn.user, password=conn.password or "",
                               database=conn.database, autocommit=autocommit, connect_timeout=10,
                               charset="utf8mb4", client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else 0
        text = f"mysql {conn.label()}: {exc.args[1] if len(exc.args) > 1 else exc}"
        if code in (1045, 1044, 1049):  # access denied, no such database: retrying will not help
            raise PermanentError(text) from None
        raise TemporaryError(text) from None


def query(conn: MyConn, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with contextlib.closing(connect(conn)) as c, c.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def execute(conn: MyConn, statements: list[str], what: str) -> None:
    """Run statements in one session; an error names the statement's first words only (one may hold a
    password hash)."""
    with contextlib.closing(connect(conn)) as c, c.cursor() as cur:
        for s in statements:
            try:
                cur.execute(s)
            except pymysql.err.MySQLError as exc:
                words = " ".join(s.split(" ", 2)[:2])
                raise PermanentError(f"{what}: on {conn.label()}: {words} ... failed: {exc}") from None


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_account(user: str, host: str) -> str:
    return "'" + user.replace("'", "''") + "'@'" + host.replace("'", "''") + "'"


@contextlib.contextmanager
def defaults_file(conn: MyConn) -> Iterator[Path]:
    """A 0600 [client] options file holding the password, for a tool run on this machine."""
    directory = Path(tempfile.mkdtemp(prefix="migrator-mycnf-"))
    path = directory / "client.cnf"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            pw = (conn.password or "").replace("\\", "\\\\").replace('"', '\\"')
            fh.write(f'[client]\nuser="{conn.user}"\npassword="{pw}"\n')
        yield path
    finally:
        path.unlink(missing_ok=True)
        directory.rmdir()


# --- where the source's tools run -----------------------------------------------------------------

def tool(name: str, local: bool) -> str:
    """MariaDB's tool names, or MySQL's where only those exist (on this machine; a container is asked)."""
    alias = {"mariadb-dump": "mysqldump", "mariadb": "mysql"}
    if not local:
        return name

    return shutil.which(name) or shutil.which(alias.get(name, name)) or name


class MySource:
    """The source server: its tools run in its container (docker exec) or here against host:port."""

    def __init__(self, label: str, *, remote: Any = None, container: str | None = None,
                 conn: MyConn | None = None, user: str = "root", password: str | None = None) -> None:
        self.label = label
        self.remote, self.container, self.conn = remote, container, conn
        self.user, self.password = user, password

    @classmethod
    def in_container(cls, remote: Any, container: str, user: str, password: str | None) -> MySource:
        return cls(f"container {container} on {getattr(remote, 'host', 'the VPS')}", remote=remote,
                   container=container, user=user, password=password)

    @classmethod
    def local(cls, conn: MyConn) -> MySource:
        return cls(conn.label(), conn=conn, user=conn.user, password=conn.password)

    @contextlib.contextmanager
    def open(self, name: str, args: list[str], stdin: bool = False) -> Iterator[ProcStream]:
        if self.container is not None:
            env = {"MYSQL_PWD": self.password} if self.password else {}
            argv = [tool(name, False), f"--user={self.user}", *args]
            with self.remote.exec_stream(self.container, argv, env=env, stdin=stdin, timeout=3600) as s:
                yield ExecStream(s, wait_timeout=300)
            return
        assert self.conn is not None
        with defaults_file(self.conn) as cnf:
            argv = [tool(name, True), f"--defaults-extra-file={cnf}", f"--host={self.conn.host}",
                    f"--port={self.conn.port}", "--protocol=tcp", *args]
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env={k: v for k, v in os.environ.items() if not k.startswith("MYSQL")})
            except FileNotFoundError:
                raise PermanentError(f"{argv[0]} is not installed on this machine (MariaDB client tools)") from None
            try:
                yield LocalStream(proc)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()

    def query(self, sql: str, database: str | None = None) -> list[list[str | None]]:
        """Rows of a query run by the `mariadb` client (batch mode: tab-separated, \\N-style escapes)."""
        args = ["--batch", "--skip-column-names", "--raw", "--default-character-set=utf8mb4"]
        if database:
            args.append(f"--database={database}")
        with self.open("mariadb", args, stdin=True) as s:
            s.write(sql.encode() + b"\n")
            s.close_stdin()
            out = bytearray()
            while chunk := s.read(CHUNK):
                out += chunk
            rc = s.wait()
            if rc != 0:
                raise PermanentError(f"mariadb in {self.label} failed ({rc}): "
                                     f"{s.stderr_tail().decode(errors='replace').strip()[-500:]}")
        rows: list[list[str | None]] = []
        for line in out.decode().splitlines():
            rows.append([None if v == "NULL" else v for v in line.split("\t")])
        return rows

    @contextlib.contextmanager
    def dump(self, database: str) -> Iterator[ProcStream]:
        with self.open("mariadb-dump", [*DUMP_OPTIONS, database]) as s:
            yield s


# --- catalog, checksums ---------------------------------------------------------------------------

def tables_sql(database: str) -> str:
    return ("SELECT TABLE_NAME, TABLE_TYPE, COALESCE(ENGINE,''), COALESCE(TABLE_ROWS,0), "
            "COALESCE(DATA_LENGTH,0)+COALESCE(INDEX_LENGTH,0) FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = {literal(database)} ORDER BY TABLE_NAME")


def programs_sql(database: str) -> str:
    """Routines, triggers and events, by kind and name: what the dump must have carried."""
    db = literal(database)
    return (f"SELECT CONCAT(ROUTINE_TYPE, ' ', ROUTINE_NAME) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA={db} "
            f"UNION ALL SELECT CONCAT('TRIGGER ', TRIGGER_NAME) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA={db} "
            f"UNION ALL SELECT CONCAT('EVENT ', EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA={db} "
            "ORDER BY 1")


def columns_sql(database: str) -> str:
    return ("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = {literal(database)} ORDER BY TABLE_NAME, ORDINAL_POSITION")


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def digest_sql(database: str, table: str, columns: list[str]) -> str:
    """Row count and an order-independent digest of every row, computed by the server: the XOR of the
    first 64 bits of each row's MD5 over its values (the hex of each value's bytes, so binary data and
    character sets compare as bytes) with a NULL marker per column. Independent of storage format and version."""
    parts = ", ".join(f"COALESCE(HEX(CAST({quote_ident(c)} AS BINARY)), 'N')" for c in columns) or "''"
    return (f"SELECT COUNT(*), COALESCE(BIT_XOR(CAST(CONV(LEFT(MD5(CONCAT_WS('|', {parts})), 16), 16, 10) "
            f"AS UNSIGNED)), 0) FROM {quote_ident(database)}.{quote_ident(table)}")


def account_of(spec: str) -> tuple[str, str]:
    """'user@host' (host default '%') -> (user, host)."""
    user, _, host = spec.rpartition("@") if "@" in spec else (spec, "", "%")
    return user, host or "%"
