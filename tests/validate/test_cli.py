"""Phase 4 through the real CLI: the four validations in one phase, the canary nowhere in what comes out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.util import migrate, status_json, write_runbook
from tests.validate.conftest import Route, kube_create, target_env
from tests.validate.test_monitoring import target, targets
from tests.validate.test_security import CANARY, bad_objects, good_objects


def phase4(srv_port: int, namespaces: list[str]) -> list[dict[str, Any]]:
    gate = {"timeout": 1, "interval": 0.2}
    return [
        {"id": "smoke", "uses": "validate.smoke", "gate": gate,
         "with": {"address": "127.0.0.1", "port": srv_port, "scheme": "http", "domain": "sevensa.test",
                  "names": ["rentguy", "api.rentguy"]}},
        {"id": "security", "uses": "validate.security", "gate": gate,
         "with": {"namespaces": namespaces, "secret_names": ["canary"],
                  "automount_allowed": ["monitoring/prometheus"]}},
        {"id": "load", "uses": "validate.load", "gate": gate,
         "with": {"address": "127.0.0.1", "port": srv_port, "host": "api.rentguy.sevensa.test", "path": "/health",
                  "requests": 100, "duration_s": 5, "concurrency": 4, "p99_ms": 2000, "max_error_rate": 0}},
        {"id": "monitoring", "uses": "validate.monitoring", "gate": gate,
         "with": {"url": f"http://127.0.0.1:{srv_port}", "expect_jobs": ["rentguy-api"]}},
    ]


def _server(http_server: Any) -> Any:
    return http_server({"rentguy.sevensa.test": Route(), "api.rentguy.sevensa.test": Route(),
                        "/api/v1/targets": Route(body=targets(target("rentguy-api", "a:8080")))})


def test_phase4_passes_on_a_good_setup(tmp_path: Path, kubeapi: Any, http_server: Any) -> None:
    for obj in good_objects():
        kube_create(kubeapi, obj)
    srv = _server(http_server)
    rb = write_runbook(tmp_path, {4: phase4(srv.port, ["rentguy", "monitoring"])},
                       environment=target_env(kubeapi.kubeconfig), secrets={"canary": {"env": "VALIDATE_CANARY"}})
    env = {"VALIDATE_CANARY": CANARY}
    proc = migrate("run", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"), env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = {s["id"]: s["status"] for s in status_json(rb, tmp_path / "state", env=env)["steps"]}
    assert steps == {"smoke": "succeeded", "security": "succeeded", "load": "succeeded", "monitoring": "succeeded"}


def test_phase4_stops_at_security_without_leaking(tmp_path: Path, kubeapi: Any, http_server: Any) -> None:
    for obj in bad_objects():
        kube_create(kubeapi, obj)
    srv = _server(http_server)
    rb = write_runbook(tmp_path, {4: phase4(srv.port, ["rentguy", "psra"])},
                       environment=target_env(kubeapi.kubeconfig), secrets={"canary": {"env": "VALIDATE_CANARY"}})
    env = {"VALIDATE_CANARY": CANARY}
    proc = migrate("run", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"), env=env, timeout=120)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "ConfigMap rentguy/app-config key DATABASE_DSN contains the value of secret canary" in out
    steps = {s["id"]: s["status"] for s in status_json(rb, tmp_path / "state", env=env)["steps"]}
    assert steps["smoke"] == "succeeded" and steps["security"] == "failed" and steps["load"] == "pending"
    texts = [out, *(p.read_text() for p in (tmp_path / "state").iterdir() if p.is_file())]
    assert all(CANARY not in t for t in texts)
    assert len(srv.hits) == 2  # the smoke test only: no load traffic after the failed gate
