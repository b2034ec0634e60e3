"""redis.copy and redis.verify between two real Redis servers (password-protected), every key type."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from migrator.adapters.redis import client, compare, summarize
from tests.stores.conftest import CANARY, SECRETS, Server, redis_conn
from tests.util import engine, migrate, write_runbook


def seed_redis(c: Any, n: int = 300) -> None:
    """Keys of every type, some with TTLs, one stream with a consumer group, in db 0 and db 2."""
    c.flushall()
    pipe = c.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"session:{i}", f"token-{i}-é".encode() + bytes([i % 256]))
        pipe.hset(f"booking:{i}", mapping={"id": i, "status": "confirmed", "price": f"{i * 1.5:.2f}"})
    for i in range(0, n, 3):
        pipe.pexpire(f"session:{i}", 3_600_000 + i)
    pipe.rpush("queue:emails", *[f"mail-{i}" for i in range(50)])
    pipe.sadd("tags", *[f"tag-{i}" for i in range(40)])
    pipe.zadd("leaderboard", {f"user-{i}": i * 0.5 for i in range(60)})
    pipe.set("counter", 41)
    pipe.incr("counter")
    pipe.set("big", b"x" * 200_000)
    pipe.expire("leaderboard", 7200)
    pipe.execute()
    for i in range(20):
        c.xadd("events", {"type": "booking", "n": str(i)})
    c.xgroup_create("events", "workers", id="0")
    c2 = client(redis_conn_of(c), 2)
    c2.set("cache:home", "<html/>", ex=600)
    c2.hset("rates", mapping={"EUR": "1", "USD": "1.08"})


def redis_conn_of(c: Any) -> Any:
    from migrator.adapters.redis import RedisConn

    kw = c.connection_pool.connection_kwargs
    return RedisConn(kw["host"], kw["port"], kw["password"])


def _runbook(tmp: Path, src: Server, dst: Server, **copy: Any) -> Path:
    env = {"target": {"ingress_address": "127.0.0.1", "data_access": "endpoint",
                      "endpoints": {"src-redis": src.endpoint(), "rentguy-redis": dst.endpoint()}}}
    params = {"source": {"endpoint": "src-redis", "password": "${secrets.pw}"},
              "target": {"endpoint": "rentguy-redis", "password": "${secrets.pw}"}}
    return write_runbook(tmp, {1: [
        {"id": "copy", "uses": "redis.copy", "with": {**params, **copy}},
        {"id": "parity", "uses": "redis.verify", "needs": ["copy"], "with": params,
         "gate": {"timeout": 10, "interval": 1}},
    ]}, environment=env, secrets=SECRETS)


def test_copy_every_type_with_ttls_then_verify_and_rollback(redises: tuple[Server, Server], tmp_path: Path,
                                                            canary_env: dict[str, str]) -> None:
    src, dst = redises
    s, d = client(redis_conn(src)), client(redis_conn(dst))
    seed_redis(s)
    d.flushall()
    eng = engine(_runbook(tmp_path, src, dst))
    assert eng.run() == 2
    rep = eng.state.steps["copy"].report
    assert rep["keys"] == 600 + 6 + 2 and rep["with_ttl"] == 100 + 1 + 1
    # Content, types, TTLs: the same on both sides, database by database.
    for db in (0, 2):
        assert compare(summarize(client(redis_conn(src), db)), summarize(client(redis_conn(dst), db))) == []
    assert d.type("events") == b"stream" and d.xinfo_groups("events")[0]["name"] == b"workers"
    assert 3_500_000 < d.pttl("session:0") <= 3_600_000 and d.pttl("session:1") == -1
    assert d.get("counter") == b"42"
    parity = eng.state.steps["parity"].report
    assert parity["db0"]["by_type"] == {"string": 302, "hash": 300, "list": 1, "set": 1, "zset": 1, "stream": 1}
    for f in (tmp_path / "state").iterdir():
        assert CANARY not in f.read_text()

    # The gate sees a changed value, a lost TTL and a missing key.
    d.hset("booking:7", "status", "cancelled")
    d.persist("session:3")
    d.delete("tags")
    problems = compare(summarize(s), summarize(d))
    assert any("1 key(s) with other content, e.g. booking:7" in p for p in problems)
    assert any("another expiry, e.g. session:3" in p for p in problems)
    assert any("missing on the target, e.g. tags" in p for p in problems)

    # Rollback empties the databases it filled (they were empty before).
    eng.rollback(step_id="copy", cascade=True)
    assert d.dbsize() == 0 and client(redis_conn(dst), 2).dbsize() == 0


def test_final_sync_replaces_and_deletes_extra_and_survives_a_crash(redises: tuple[Server, Server], tmp_path: Path,
                                                                    canary_env: dict[str, str]) -> None:
    src, dst = redises
    s, d = client(redis_conn(src)), client(redis_conn(dst))
    seed_redis(s, 3000)
    d.flushall()
    d.set("stale", "from an earlier copy")
    rb = _runbook(tmp_path, src, dst, existing="merge", delete_extra=True, batch=200)
    env = {"STORE_PASSWORD": CANARY}
    state = str(tmp_path / "state")
    cp = migrate("run", "--runbook", str(rb), "--state-dir", state, "--yes",
                 env={**env, "MIGRATE_FAILPOINTS": "copy:after-batch@5=crash"})
    assert cp.returncode != 0
    assert 0 < d.dbsize() < 6000
    s.set("booking:1", "changed after the crash")
    cp = migrate("resume", "--runbook", str(rb), "--state-dir", state, "--yes", env=env)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert d.get("booking:1") == b"changed after the crash" and d.exists("stale") == 0
    assert compare(summarize(s), summarize(d)) == []


def test_wrong_password_is_one_line(redises: tuple[Server, Server], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = redises
    monkeypatch.setenv("STORE_PASSWORD", "wrong-" + CANARY)
    rb = _runbook(tmp_path, src, dst)
    cp = migrate("run", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"), "--yes",
                 env={"STORE_PASSWORD": "wrong-" + CANARY})
    assert cp.returncode == 1
    assert "authentication failed" in cp.stderr or "invalid" in cp.stderr.lower()
    assert CANARY not in cp.stderr + cp.stdout
    # No password in any redis-server's argv either (it reads requirepass from a 0600 file).
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert CANARY not in ps
    time.sleep(0)
