"""Real MariaDB and Redis servers for the mysql.* and redis.* step types (Debian's mariadb-server and
redis-server, started by the tests on free loopback ports), each behind a canary password."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from migrator.adapters.mysql import MyConn
from migrator.adapters.redis import RedisConn
from migrator.sandbox import hoststores
from tests.postgres.cluster import free_port

CANARY = "canary-My5q-Rd9x-not-in-argv"


@dataclass
class Server:
    base: Path
    port: int

    def endpoint(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port}


@pytest.fixture(scope="session")
def mariadbs() -> Iterator[tuple[Server, Server]]:
    if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
        pytest.skip("mariadb-server is not installed")
    root = Path(tempfile.mkdtemp(prefix="migrator-my-"))
    root.chmod(0o755)  # the servers run as the mysql user
    servers = (Server(root / "src", free_port()), Server(root / "dst", free_port()))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(hoststores.mariadb_up, s.base, s.port, CANARY) for s in servers]:
            f.result()
    try:
        yield servers
    finally:
        for s in servers:
            hoststores.mariadb_down(s.base)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redises() -> Iterator[tuple[Server, Server]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    root = Path(tempfile.mkdtemp(prefix="migrator-rd-"))
    servers = (Server(root / "src", free_port()), Server(root / "dst", free_port()))
    for s in servers:
        hoststores.redis_up(s.base, s.port, CANARY)
    try:
        yield servers
    finally:
        for s in servers:
            hoststores.redis_down(s.base)
        shutil.rmtree(root, ignore_errors=True)


def my_conn(s: Server, database: str | None = None) -> MyConn:
    return MyConn("127.0.0.1", s.port, "root", CANARY, database)


def redis_conn(s: Server) -> RedisConn:
    return RedisConn("127.0.0.1", s.port, CANARY)


@pytest.fixture
def canary_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("STORE_PASSWORD", CANARY)
    return {"STORE_PASSWORD": CANARY}


SECRETS = {"pw": {"env": "STORE_PASSWORD"}}
