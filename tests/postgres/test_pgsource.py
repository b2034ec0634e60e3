"""PgSource's kept-open psql gives its SSH session back when the connection's sessions are all in use."""

from __future__ import annotations

from typing import Any

from migrator.adapters.pgsource import LocalRunner, PgSource
from tests.postgres.cluster import Cluster


class _Ssh:
    def __init__(self) -> None:
        self.releasers: list[Any] = []

    def add_idle_releaser(self, fn: Any) -> None:
        self.releasers.append(fn)

    def remove_idle_releaser(self, fn: Any) -> None:
        self.releasers.remove(fn)


class _Remote:
    host = "vps"

    def __init__(self) -> None:
        self.ssh = _Ssh()


def test_container_source_registers_and_unregisters_its_releaser() -> None:
    remote = _Remote()
    source = PgSource.container(remote, "db", "app", "postgres")
    assert remote.ssh.releasers == [source.release_idle]
    source.close()
    assert remote.ssh.releasers == []


def test_idle_session_released_busy_one_kept(clusters: tuple[Cluster, Cluster]) -> None:
    src, _ = clusters
    conn = src.conn("postgres")
    source = PgSource(LocalRunner(), "postgres", conn.env(), persistent=True)
    try:
        assert source.query("SELECT 1") == [["1"]]
        first = source._session
        assert first is not None
        source.release_idle()
        assert source._session is None  # closed: it held a session while idle
        assert source.query("SELECT 2") == [["2"]]  # a new one opens on demand
        with source._lock:  # as a query in progress holds it
            source.release_idle()
            assert source._session is not None
        assert source.query("SELECT 3") == [["3"]]
    finally:
        source.close()
