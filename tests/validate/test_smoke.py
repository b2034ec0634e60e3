"""validate.smoke against real local servers and the kube stand-in's ingress."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import PermanentError
from tests.util import engine, write_runbook
from tests.validate.conftest import Route, kube_create, target_env


def smoke_step(**with_: Any) -> dict[str, Any]:
    return {"id": "smoke", "uses": "validate.smoke", "with": with_, "gate": {"timeout": 1.5, "interval": 0.2}}


def test_every_host_answers(tmp_path: Path, http_server: Any) -> None:
    srv = http_server({"rentguy.sevensa.test": Route(), "api.rentguy.sevensa.test": Route()})
    rb = write_runbook(tmp_path, {4: [smoke_step(address="127.0.0.1", port=srv.port, scheme="http",
                                                 domain="sevensa.test", names=["rentguy", "api.rentguy"])]})
    eng = engine(rb)
    eng.run()
    rec = eng.state.steps["smoke"]
    assert rec.status == "succeeded"
    hosts = rec.report["hosts"]
    assert set(hosts) == {"rentguy.sevensa.test", "api.rentguy.sevensa.test"}
    assert hosts["rentguy.sevensa.test"]["/health"]["status"] == 200
    assert hosts["rentguy.sevensa.test"]["/health"]["ms"] >= 0
    assert rec.report["hosts_failed"] == 0
    assert set(srv.hits) == {("rentguy.sevensa.test", "/health"), ("api.rentguy.sevensa.test", "/health")}


def test_failing_and_slow_hosts_are_named(tmp_path: Path, http_server: Any) -> None:
    srv = http_server({"ok.sevensa.test": Route(),
                       "broken.sevensa.test": Route(503, body={"error": "backend not ready"}),
                       "slow.sevensa.test": Route(delay_s=1.0)})
    rb = write_runbook(tmp_path, {4: [smoke_step(address="127.0.0.1", port=srv.port, scheme="http", timeout_s=0.3,
                                                 hosts=["ok.sevensa.test", "broken.sevensa.test",
                                                        "slow.sevensa.test"])]})
    eng = engine(rb)
    with pytest.raises(PermanentError) as err:
        eng.run()
    message = str(err.value)
    assert "2 of 3 hosts failed" in message
    assert "broken.sevensa.test/health: status 503, expected [200] (backend not ready)" in message
    assert "slow.sevensa.test/health: timed out" in message
    assert "ok.sevensa.test/" not in message
    assert eng.state.steps["smoke"].status == "failed"


def test_defaults_to_the_runbook_ingress(tmp_path: Path, http_server: Any) -> None:
    srv = http_server({"*": Route()})
    env = {"target": {"ingress_address": "127.0.0.1", "ingress_port": srv.port, "ingress_scheme": "http"}}
    rb = write_runbook(tmp_path, {4: [smoke_step(hosts=["a.test"], paths=["/health", "/ready"])]}, environment=env)
    eng = engine(rb)
    eng.run()
    assert eng.state.steps["smoke"].report["through"] == f"http://127.0.0.1:{srv.port}"
    assert sorted(srv.hits) == [("a.test", "/health"), ("a.test", "/ready")]


def test_bad_params_are_refused_at_load(tmp_path: Path) -> None:
    from migrator.errors import InputError

    rb = write_runbook(tmp_path, {4: [smoke_step(address="127.0.0.1", names=["x"])]})
    with pytest.raises(InputError):
        engine(rb)


def _app(handle: Any, ns: str, name: str, host: str) -> None:
    kube_create(handle, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    labels = {"app": name}
    kube_create(handle, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
                         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                                  "template": {"metadata": {"labels": labels},
                                               "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    kube_create(handle, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                         "spec": {"selector": labels, "ports": [{"port": 80}]}})
    kube_create(handle, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                         "metadata": {"name": name, "namespace": ns},
                         "spec": {"rules": [{"host": host, "http": {"paths": [
                             {"path": "/", "pathType": "Prefix",
                              "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}})


def test_through_the_kube_ingress_standin(tmp_path: Path, kubeapi: Any) -> None:
    _app(kubeapi, "rentguy", "rentguy-api", "api.rentguy.sevensa.test")
    _app(kubeapi, "psra", "psra-api", "api.psra.sevensa.test")
    kubeapi.set_failure("psra", "psra-api", "ImagePullBackOff")
    port = int(kubeapi.ingress_url.rsplit(":", 1)[1])
    step = smoke_step(domain="sevensa.test", names=["api.rentguy", "api.psra", "nope"])
    step["gate"] = {"timeout": 3, "interval": 0.2}
    rb = write_runbook(tmp_path, {4: [step]}, environment=target_env(kubeapi.kubeconfig, port))
    eng = engine(rb)
    started = time.monotonic()
    with pytest.raises(PermanentError) as err:
        eng.run()
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert "api.psra.sevensa.test/health: status 503" in message and "ImagePullBackOff" in message
    assert "nope.sevensa.test/health: status 404" in message
    assert "api.rentguy.sevensa.test" not in message
    journal = [json.loads(x) for x in (tmp_path / "state" / "test.journal.jsonl").read_text().splitlines()]
    smoke = [e for e in journal if e["event"] == "validate-smoke"]
    assert smoke and smoke[-1]["failed"] == ["api.psra.sevensa.test", "nope.sevensa.test"]


def test_host_paths_replace_the_default_paths_for_those_hosts(tmp_path: Path, http_server: Any) -> None:
    srv = http_server({"*": Route()})
    rb = write_runbook(tmp_path, {4: [smoke_step(address="127.0.0.1", port=srv.port, scheme="http",
                                                 domain="sevensa.test", names=["rentguy", "vault", "grafana"],
                                                 host_paths={"vault": ["/v1/sys/health"],
                                                             "grafana.sevensa.test": ["/api/health"]})]})
    eng = engine(rb)
    eng.run()
    assert set(srv.hits) == {("rentguy.sevensa.test", "/health"), ("vault.sevensa.test", "/v1/sys/health"),
                             ("grafana.sevensa.test", "/api/health")}


def test_host_paths_for_a_host_not_checked_is_a_runbook_error(tmp_path: Path) -> None:
    from tests.util import migrate

    rb = write_runbook(tmp_path, {4: [smoke_step(address="127.0.0.1", port=1, scheme="http", domain="sevensa.test",
                                                 names=["rentguy"], host_paths={"valt": ["/v1/sys/health"]})]})
    proc = migrate("plan", "--runbook", str(rb))
    assert proc.returncode == 2
    assert "host_paths: valt.sevensa.test not among the hosts checked" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
