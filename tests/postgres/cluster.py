"""Throw-away PostgreSQL 15 clusters for tests and benchmarks (run as the `postgres` OS user).

Host connections need the password (scram-sha-256), so a test proves the migrator passes it properly.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from migrator.adapters.postgres import PgConn

BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(argv: list[str]) -> list[str]:
    return argv if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *argv]


class Cluster:
    def __init__(self, name: str, password: str, settings: dict[str, str] | None = None) -> None:
        self.name = name
        self.password = password
        self.root = Path(tempfile.mkdtemp(prefix=f"migrator-pg-{name}-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.settings = {"wal_level": "logical", "fsync": "off", "full_page_writes": "off",
                         "max_wal_size": "4GB", "log_min_messages": "warning", **(settings or {})}
        shutil.chown(self.root, "postgres") if os.geteuid() == 0 else None
        pw = self.root / "pw"
        pw.write_text(password + "\n")
        os.chmod(pw, 0o600)
        if os.geteuid() == 0:
            shutil.chown(pw, "postgres")
        subprocess.run(_as_postgres([str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", f"--pwfile={pw}",
                                     "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
                                     "--locale=C.UTF-8", "-E", "UTF8"]),
                       check=True, capture_output=True)
        pw.unlink()

    def start(self) -> Cluster:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 " + " ".join(
            f"-c {k}={v}" for k, v in self.settings.items())
        subprocess.run(_as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30",
                                     "-l", str(self.root / "log"), "-o", opts, "start"]),
                       check=True, capture_output=True)
        return self

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def conn(self, database: str = "postgres") -> PgConn:
        return PgConn("127.0.0.1", self.port, "postgres", database, self.password)

    def sql(self, query: str, database: str = "postgres", params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(**self.conn(database).kwargs(), autocommit=True) as c:
            cur = c.execute(query.encode(), params)
            return cur.fetchall() if cur.description else []

    def create_db(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.sql(f'CREATE DATABASE "{name}"')

    def endpoint(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port}
