"""validate.monitoring with declared_in: the targets the deployed objects declare (prometheus.io/scrape on
Pods and Services, read from the Kubernetes API stand-in) must each be an active target, not a count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.errors import PermanentError
from tests.util import engine, write_runbook
from tests.validate.conftest import Route


def apply(kubeconfig: Path, *objs: dict[str, Any]) -> None:
    import subprocess

    from tests.util import REPO

    proc = subprocess.run([str(REPO / ".venv" / "bin" / "kubectl"), "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
                          input=yaml.safe_dump_all(objs), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def pod(ns: str, name: str, scrape: bool) -> dict[str, Any]:
    ann = {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"} if scrape else {}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "annotations": ann},
            "spec": {"containers": [{"name": "app", "image": "sevensa/app:1"}]}}


def active(ns: str, pod_name: str, health: str = "up") -> dict[str, Any]:
    return {"labels": {"job": "kubernetes-pods", "instance": "10.0.0.1:8080", "namespace": ns},
            "discoveredLabels": {"__meta_kubernetes_namespace": ns, "__meta_kubernetes_pod_name": pod_name,
                                 "__address__": "10.0.0.1:8080"},
            "health": health, "lastError": ""}


def run(tmp_path: Path, kubeconfig: Path, url: str) -> Any:
    step = {"id": "monitoring", "uses": "validate.monitoring", "gate": {"timeout": 1, "interval": 0.2},
            "with": {"url": url, "declared_in": ["rentguy", "psra"]}}
    eng = engine(write_runbook(tmp_path, {4: [step]}, environment={
        "target": {"kubeconfig": str(kubeconfig), "ingress_address": "127.0.0.1"}}))
    eng.run()
    return eng


@pytest.fixture
def declared(tmp_path: Path, kubeapi: Any) -> Path:
    kubeconfig = tmp_path / "kubeconfig"
    apply(kubeconfig, *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in ("rentguy", "psra")))
    apply(kubeconfig, pod("rentguy", "rentguy-api-0", True), pod("psra", "psra-api-0", True),
          pod("psra", "psra-worker-0", False))
    return kubeconfig


def test_every_declared_target_scraped(tmp_path: Path, declared: Path, http_server: Any) -> None:
    body = {"status": "success", "data": {"activeTargets": [active("rentguy", "rentguy-api-0"),
                                                            active("psra", "psra-api-0")], "droppedTargets": []}}
    srv = http_server({"/api/v1/targets": Route(body=body)})
    report = run(tmp_path, declared, srv.url).state.steps["monitoring"].report
    assert report["declared"] == 2 and report["declared_unscraped"] == 0 and report["up"] == 2


def test_a_declared_pod_without_a_target_fails_naming_it(tmp_path: Path, declared: Path, http_server: Any) -> None:
    """The fixed count of old would pass here (one target up); the declared objects do not."""
    body = {"status": "success", "data": {"activeTargets": [active("rentguy", "rentguy-api-0")], "droppedTargets": []}}
    srv = http_server({"/api/v1/targets": Route(body=body)})
    with pytest.raises(PermanentError) as err:
        run(tmp_path, declared, srv.url)
    assert "Pod psra/psra-api-0 declares prometheus.io/scrape but Prometheus has no target for it" in str(err.value)
    assert "psra-worker-0" not in str(err.value) and "rentguy-api-0" not in str(err.value)


def test_a_declared_service_counts_too(tmp_path: Path, declared: Path, http_server: Any) -> None:
    apply(declared, {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "psra-api", "namespace": "psra", "annotations": {"prometheus.io/scrape": "true"}},
        "spec": {"selector": {"app": "psra-api"}, "ports": [{"port": 8080}]}})
    body = {"status": "success", "data": {"activeTargets": [active("rentguy", "rentguy-api-0"),
                                                            active("psra", "psra-api-0")], "droppedTargets": []}}
    srv = http_server({"/api/v1/targets": Route(body=body)})
    with pytest.raises(PermanentError, match="Service psra/psra-api declares prometheus.io/scrape but Prometheus has "
                                             "no target for it"):
        run(tmp_path, declared, srv.url)
