"""validate.load and migrator.adapters.loadtest: bounds (count and time), percentiles, thresholds, loopback only."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from migrator.adapters.loadtest import GRACE_S, LoadSpec, NotLoopback, loopback_ip, run_load
from migrator.errors import PermanentError
from tests.util import engine, write_runbook
from tests.validate.conftest import Route


def load_step(**with_: Any) -> dict[str, Any]:
    return {"id": "load", "uses": "validate.load", "with": with_, "gate": {"timeout": 1, "interval": 0.2}}


def test_count_bound_percentiles_and_keepalive(http_server: Any) -> None:
    srv = http_server({"*": Route()})
    result = run_load(LoadSpec("127.0.0.1", srv.port, "/health", "api.test", requests=300, duration_s=30,
                               concurrency=4))
    assert result.requests == 300 and result.ok == 300 and result.errors == 0
    assert len(srv.hits) == 300 and srv.hits[0] == ("api.test", "/health")
    assert len(srv.connections) <= 4  # keep-alive: one connection per worker
    assert result.stopped_by == "requests"
    p50, p95, p99 = (result.percentile(p) for p in (50, 95, 99))
    assert p50 is not None and p95 is not None and p99 is not None
    assert 0 < p50 <= p95 <= p99 <= max(result.latencies_ms)
    summary = result.summary()
    assert summary["requests"] == 300 and summary["rps"] > 0 and summary["p99_ms"] == round(p99, 2)


def test_time_bound(http_server: Any) -> None:
    srv = http_server({"*": Route(delay_s=0.05)})
    started = time.monotonic()
    result = run_load(LoadSpec("127.0.0.1", srv.port, requests=100_000, duration_s=0.8, concurrency=4))
    elapsed = time.monotonic() - started
    assert result.stopped_by == "duration"
    assert elapsed < 0.8 + GRACE_S + 1.0
    assert 0 < result.requests < 100_000 and result.requests == len(srv.hits)


def test_hanging_server_is_cut_at_the_time_bound(http_server: Any) -> None:
    srv = http_server({"*": Route(delay_s=5)})
    started = time.monotonic()
    result = run_load(LoadSpec("127.0.0.1", srv.port, requests=50, duration_s=0.3, concurrency=2, timeout_s=30))
    assert time.monotonic() - started < 0.3 + GRACE_S + 1.0
    assert result.ok == 0 and result.errors == result.requests == 2
    assert result.error_kinds["timeout"] == 2


def test_percentile_nearest_rank() -> None:
    from migrator.adapters.loadtest import LoadResult

    r = LoadResult(latencies_ms=[float(x) for x in range(1, 101)])
    assert (r.percentile(50), r.percentile(95), r.percentile(99), r.percentile(100)) == (50.0, 95.0, 99.0, 100.0)
    assert LoadResult().percentile(50) is None


@pytest.mark.parametrize("host", ["10.0.0.1", "8.8.8.8", "example.com", "::1", "0.0.0.0", "127.0.0.1.nip.io"])
def test_only_loopback_literals(host: str) -> None:
    with pytest.raises(NotLoopback):
        loopback_ip(host)


def test_loopback_literals_accepted() -> None:
    assert loopback_ip("127.0.0.20") == "127.0.0.20"
    assert loopback_ip("localhost") == "127.0.0.1"


def test_engine_passes_and_reports(tmp_path: Path, http_server: Any) -> None:
    srv = http_server({"*": Route()})
    rb = write_runbook(tmp_path, {4: [load_step(address="127.0.0.1", port=srv.port, host="api.rentguy.sevensa.test",
                                                path="/health", requests=120, duration_s=10, concurrency=4,
                                                p50_ms=500, p95_ms=1000, p99_ms=2000, max_error_rate=0)]})
    eng = engine(rb)
    eng.run()
    rec = eng.state.steps["load"]
    assert rec.status == "succeeded"
    assert rec.report["requests"] == 120 and rec.report["errors"] == 0
    assert {"p50_ms", "p95_ms", "p99_ms", "rps"} <= set(rec.report)
    assert rec.facts["last_load"]["requests"] == 120
    journal = [json.loads(x) for x in (tmp_path / "state" / "test.journal.jsonl").read_text().splitlines()]
    loads = [e for e in journal if e["event"] == "validate-load"]
    assert loads and loads[-1]["requests"] == 120 and loads[-1]["p95_ms"] is not None


def test_slow_server_fails_naming_the_threshold(tmp_path: Path, http_server: Any) -> None:
    srv = http_server({"*": Route(delay_s=0.1)})
    rb = write_runbook(tmp_path, {4: [load_step(url=f"http://127.0.0.1:{srv.port}/health", requests=20,
                                                duration_s=5, concurrency=4, p50_ms=2000, p95_ms=50)]})
    eng = engine(rb)
    with pytest.raises(PermanentError) as err:
        eng.run()
    assert "p95_ms" in str(err.value) and "> 50" in str(err.value)
    assert "p50_ms" not in str(err.value)
    assert len(srv.hits) == 20  # one run, not retried until the gate's deadline


def test_failing_server_fails_on_error_rate(tmp_path: Path, http_server: Any) -> None:
    srv = http_server({"*": Route(500)})
    rb = write_runbook(tmp_path, {4: [load_step(address="127.0.0.1", port=srv.port, requests=30, duration_s=5,
                                                max_error_rate=0.05)]})
    eng = engine(rb)
    with pytest.raises(PermanentError) as err:
        eng.run()
    assert "error rate 100.00% > 5.00% (status 500 ×30)" in str(err.value)


@pytest.mark.parametrize("where", [{"address": "10.1.2.3", "port": 80}, {"url": "http://192.0.2.7:8080/"},
                                   {"address": "example.com", "port": 80}])
def test_non_loopback_refused_without_traffic(tmp_path: Path, where: dict[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Any] = []
    real = socket.create_connection

    def spy(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    monkeypatch.setattr(socket.socket, "connect", lambda *a: opened.append(a))
    rb = write_runbook(tmp_path, {4: [load_step(**where, requests=5, duration_s=1)]})
    eng = engine(rb)
    with pytest.raises(PermanentError) as err:
        eng.run()
    assert "refused" in str(err.value) and "loopback" in str(err.value)
    assert opened == []


def test_rate_paces_the_requests(http_server: Any) -> None:
    srv = http_server({"*": Route()})
    started = time.monotonic()
    result = run_load(LoadSpec("127.0.0.1", srv.port, requests=20, duration_s=10, concurrency=4, rate=40))
    elapsed = time.monotonic() - started
    assert result.requests == result.ok == len(srv.hits) == 20 and result.stopped_by == "requests"
    assert elapsed >= 19 / 40 - 0.02  # request n starts no earlier than n/rate s into the run
    assert result.rps <= 40 * 1.1


def test_rate_and_the_time_bound_together(http_server: Any) -> None:
    srv = http_server({"*": Route()})
    result = run_load(LoadSpec("127.0.0.1", srv.port, requests=1000, duration_s=0.5, concurrency=4, rate=20))
    assert result.stopped_by == "duration" and result.requests == len(srv.hits) <= 11


def test_remote_needs_a_rate_and_the_remote_bounds_before_any_traffic() -> None:
    with pytest.raises(ValueError, match="needs a rate"):
        run_load(LoadSpec("10.1.2.3", 80, allow_remote=True))
    with pytest.raises(ValueError, match="for a remote target: requests 1..10000"):
        run_load(LoadSpec("10.1.2.3", 80, requests=20_000, rate=10, allow_remote=True))
    with pytest.raises(NotLoopback, match="names are not resolved"):
        run_load(LoadSpec("ingress.example", 80, rate=10, allow_remote=True))


@pytest.mark.parametrize(("extra", "why"), [
    ({}, "allow_remote: `rate:` (requests/s) is required"),
    ({"rate": 500}, "rate 500 > 200"),
    ({"rate": 10, "requests": 12000, "duration_s": 300}, "requests 12000 > 10000; duration_s 300 > 120"),
])
def test_allow_remote_bounds_are_bad_input(tmp_path: Path, extra: dict[str, Any], why: str) -> None:
    from tests.util import migrate

    rb = write_runbook(tmp_path, {4: [load_step(address="10.1.2.3", port=80, allow_remote=True, **extra)]})
    proc = migrate("plan", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0], proc.stderr


def test_allow_remote_runs_paced_against_the_target_it_names(tmp_path: Path, http_server: Any) -> None:
    """The tests keep to loopback: allow_remote takes any IP literal, 127.0.0.1 included."""
    srv = http_server({"*": Route()})
    rb = write_runbook(tmp_path, {4: [load_step(address="127.0.0.1", port=srv.port, allow_remote=True, rate=50,
                                                requests=10, duration_s=5)]})
    eng = engine(rb)
    eng.run()
    report = eng.state.steps["load"].report
    assert report["requests"] == report["ok"] == 10 and len(srv.hits) == 10
