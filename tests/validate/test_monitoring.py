"""validate.monitoring against a Prometheus-shaped server and the sandbox's Prometheus stand-in."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import PermanentError
from migrator.sandbox.layout import STANDINS_DIR
from tests.util import engine, write_runbook
from tests.validate.conftest import Route


def target(job: str, instance: str, health: str = "up", error: str = "") -> dict[str, Any]:
    return {"labels": {"job": job, "instance": instance}, "health": health, "lastError": error}


def targets(*items: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "data": {"activeTargets": list(items), "droppedTargets": []}}


def mon_step(**with_: Any) -> dict[str, Any]:
    return {"id": "monitoring", "uses": "validate.monitoring", "with": with_, "gate": {"timeout": 1, "interval": 0.2}}


def test_all_up(tmp_path: Path, http_server: Any) -> None:
    srv = http_server({"/api/v1/targets": Route(body=targets(target("rentguy-api", "a:8080"),
                                                             target("node", "n1:9100")))})
    rb = write_runbook(tmp_path, {4: [mon_step(url=srv.url, expect_jobs=["rentguy-api", "node"])]})
    eng = engine(rb)
    eng.run()
    report = eng.state.steps["monitoring"].report
    assert report["targets"] == 2 and report["up"] == 2 and report["down"] == 0
    assert report["jobs"]["node"] == {"up": 1, "down": 0}


def test_down_targets_and_missing_jobs_are_listed(tmp_path: Path, http_server: Any) -> None:
    srv = http_server({"/api/v1/targets": Route(body=targets(
        target("rentguy-api", "a:8080"), target("psra-api", "b:8080", "down", "connection refused"),
        target("grafana", "g:3000", "unknown")))})
    rb = write_runbook(tmp_path, {4: [mon_step(url=srv.url + "/", expect_jobs=["rentguy-api", "keycloak"])]})
    with pytest.raises(PermanentError) as err:
        engine(rb).run()
    message = str(err.value)
    assert "psra-api/b:8080 is down (connection refused)" in message
    assert "grafana/g:3000 is unknown" in message
    assert "job keycloak has no target" in message
    assert "rentguy-api/" not in message


def test_ignored_jobs_and_not_prometheus(tmp_path: Path, http_server: Any) -> None:
    srv = http_server({"/api/v1/targets": Route(body=targets(target("x", "x:1", "down")))})
    rb = write_runbook(tmp_path / "a", {4: [mon_step(url=srv.url, ignore_jobs=["x"])]})
    engine(rb).run()
    other = http_server({"/api/v1/targets": Route(body={"hello": "world"})})
    rb = write_runbook(tmp_path / "b", {4: [mon_step(url=other.url)]})
    with pytest.raises(PermanentError, match="not a targets answer"):
        engine(rb).run()


def test_through_an_address_with_host_header(tmp_path: Path, http_server: Any) -> None:
    srv = http_server({"prometheus.sevensa.test": Route(body=targets(target("a", "a:1")))})
    env = {"target": {"ingress_address": "127.0.0.1", "ingress_port": srv.port, "ingress_scheme": "http"}}
    rb = write_runbook(tmp_path, {4: [mon_step(host="prometheus.sevensa.test")]}, environment=env)
    engine(rb).run()
    assert srv.hits == [("prometheus.sevensa.test", "/api/v1/targets")]


@pytest.fixture
def prometheus_standin(http_server: Any) -> Iterator[tuple[str, Any]]:
    """The sandbox's own Prometheus stand-in handler, served on 127.0.0.1, probing two local targets."""
    sys.path.insert(0, str(STANDINS_DIR))
    try:
        import prometheus  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(STANDINS_DIR))
    healthy = http_server({"*": Route()})
    broken = http_server({"*": Route(503)})
    prometheus.TARGETS = [{"job": "rentguy-api", "url": f"{healthy.url}/metrics"},
                          {"job": "psra-api", "url": f"{broken.url}/metrics"}]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), prometheus.PromHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", broken
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_sandbox_prometheus_standin(tmp_path: Path, prometheus_standin: tuple[str, Any]) -> None:
    url, broken = prometheus_standin
    rb = write_runbook(tmp_path, {4: [mon_step(url=url, expect_jobs=["rentguy-api", "psra-api"])]})
    with pytest.raises(PermanentError) as err:
        engine(rb).run()
    assert f"psra-api/127.0.0.1:{broken.port} is down (HTTP Error 503" in str(err.value)
    assert "rentguy-api" not in str(err.value)
