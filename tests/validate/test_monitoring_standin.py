"""validate.monitoring against the cluster stand-in's Prometheus, which follows the scrape configuration
the platform ships (migrator/manifests/monitoring.yaml): pods kept by their prometheus.io/scrape
annotation, Traefik's static target through its metrics Service. The count of old passes on any ten
targets; these tests fail on the one declared pod that is not scraped or not up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.errors import PermanentError
from tests.util import REPO, engine, write_runbook
from tests.validate.test_monitoring_declared import apply

SHIPPED = REPO / "migrator" / "manifests" / "monitoring.yaml"


def shipped_scrape_config() -> str:
    text = SHIPPED.read_text().replace("${vars.namespaces.ingress}", "ingress")
    (cm,) = [d for d in yaml.safe_load_all(text) if d and d.get("metadata", {}).get("name") == "prometheus-config"]
    return str(cm["data"]["prometheus.yml"])


def workload(ns: str, name: str, port: int, scrape: bool, kind: str = "Deployment",
             volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    ann = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port)} if scrape else {}
    spec: dict[str, Any] = {"containers": [{"name": name, "image": f"sevensa/{name}:1",
                                            "ports": [{"name": "http", "containerPort": port}]}]}
    if volumes:
        spec["volumes"] = volumes
    body: dict[str, Any] = {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                            "template": {"metadata": {"labels": {"app": name}, "annotations": ann}, "spec": spec}}
    if kind == "StatefulSet":
        body["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": body}


def service(ns: str, name: str, app: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": app}, "ports": [{"name": "p", "port": port}]}}


@pytest.fixture
def cluster(tmp_path: Path, kubeapi: Any) -> Path:
    kubeconfig = tmp_path / "kubeconfig"
    apply(kubeconfig, *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                        for ns in ("monitoring", "ingress", "apps")))
    apply(kubeconfig,
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus-config", "namespace": "monitoring"},
           "data": {"prometheus.yml": shipped_scrape_config()}},
          workload("monitoring", "prometheus", 9090, True, "StatefulSet",
                   [{"name": "config", "configMap": {"name": "prometheus-config"}}]),
          service("monitoring", "prometheus", "prometheus", 9090),
          {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "prom", "namespace": "monitoring"},
           "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
               "service": {"name": "prometheus", "port": {"number": 9090}}}}]}}]}},
          workload("ingress", "traefik", 8080, False), service("ingress", "traefik-metrics", "traefik", 8080),
          workload("apps", "api", 3000, True), workload("apps", "quiet", 3000, False))
    return kubeconfig


def run(tmp_path: Path, kubeconfig: Path, url: str, timeout: float = 8) -> Any:
    step = {"id": "monitoring", "uses": "validate.monitoring", "gate": {"timeout": timeout, "interval": 0.3},
            "with": {"url": url, "declared_in": ["monitoring", "ingress", "apps"],
                     "expect_jobs": ["kubernetes-pods", "traefik"]}}
    eng = engine(write_runbook(tmp_path / "rb", {4: [step]}, environment={
        "target": {"kubeconfig": str(kubeconfig), "ingress_address": "127.0.0.1"}}))
    eng.run()
    return eng


def test_the_shipped_config_scrapes_what_is_declared(tmp_path: Path, cluster: Path, kubeapi: Any) -> None:
    report = run(tmp_path, cluster, kubeapi.ingress_url).state.steps["monitoring"].report
    # prometheus and api declare it; quiet and traefik's pod do not (traefik is the static job)
    assert report["declared"] == 2 and report["declared_unscraped"] == 0, report
    assert report["jobs"] == {"kubernetes-pods": {"up": 2, "down": 0}, "traefik": {"up": 1, "down": 0}}, report


def test_a_declared_pod_that_is_down_fails_naming_it(tmp_path: Path, cluster: Path, kubeapi: Any) -> None:
    run(tmp_path, cluster, kubeapi.ingress_url)  # all up first
    kubeapi.set_failure("apps", "api", "CrashLoopBackOff: metrics port never opened")
    with pytest.raises(PermanentError) as err:
        run(tmp_path / "again", cluster, kubeapi.ingress_url, timeout=1.5)
    assert "kubernetes-pods/" in str(err.value) and "CrashLoopBackOff" in str(err.value), err.value
    assert "quiet" not in str(err.value)


def test_a_static_target_on_an_undeclared_port_is_down(tmp_path: Path, cluster: Path, kubeapi: Any) -> None:
    """The manifests' old static target, traefik.<ns>.svc:8080, on a Service without that port."""
    apply(cluster, service("ingress", "traefik-metrics", "traefik", 80))
    with pytest.raises(PermanentError, match=r"traefik/traefik-metrics.ingress.svc:8080 is down \(connection "
                                             r"refused: Service ingress/traefik-metrics declares no port 8080"):
        run(tmp_path, cluster, kubeapi.ingress_url, timeout=1.5)
