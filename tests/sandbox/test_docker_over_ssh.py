"""Through SSH, the Docker API shows the Compose project ``sevensa`` with every service running, and the
VPS's Traefik stand-in routes public hostnames to the app stand-ins."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import docker
import pytest

from migrator.sandbox import compose
from migrator.sandbox.platform import SandboxInfo

pytestmark = pytest.mark.sandbox


@pytest.fixture
def client(sandbox: SandboxInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[docker.DockerClient]:
    monkeypatch.setenv("HOME", sandbox.facts["ssh"]["home"])
    c = docker.DockerClient(base_url=sandbox.facts["docker"]["ssh_url"], use_ssh_client=False, timeout=30)
    yield c
    c.close()


def test_compose_project_runs_every_service(sandbox: SandboxInfo, client: docker.DockerClient) -> None:
    project = sandbox.facts["compose"]["project"]
    containers = client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
    by_service = {c.labels["com.docker.compose.service"]: c for c in containers}
    assert set(by_service) == set(compose.services())
    assert len(by_service) >= 24
    for name, c in by_service.items():
        assert c.status == "running", name
        health = c.attrs["State"].get("Health", {}).get("Status")
        assert health == "healthy", (name, health)


def test_named_volumes_and_segmented_networks(sandbox: SandboxInfo, client: docker.DockerClient) -> None:
    volumes = {v.name for v in client.volumes.list()}
    for v in ("rentguy-db-data", "psra-db-data", "wpcs-db-data", "keycloak-db-data", "wpcs-uploads",
              "openbao-data"):
        assert f"sevensa_{v}" in volumes
    nets = {n.name for n in client.networks.list()}
    assert {"sevensa_rentguy", "sevensa_psra", "sevensa_wpcs", "sevensa_ai", "sevensa_infra",
            "sevensa_monitoring", "sevensa_logging", "sevensa_traefik-public"} <= nets
    db = client.containers.get(sandbox.facts["compose"]["services"]["rentguy-db"]["container"])
    assert set(db.attrs["NetworkSettings"]["Networks"]) == {"sevensa_rentguy"}


def test_uploads_volume_holds_real_files(sandbox: SandboxInfo, client: docker.DockerClient) -> None:
    c = client.containers.get(sandbox.facts["compose"]["services"]["wpcs-wordpress"]["container"])
    res = c.exec_run(["sh", "-c", "find /var/www/html/wp-content/uploads -type f | wc -l; "
                      "du -sk /var/www/html/wp-content/uploads | cut -f1; "
                      "head -c 8 /var/www/html/wp-content/uploads/2022/01/photo-00000.png | od -An -c"])
    assert res.exit_code == 0
    lines = res.output.decode().splitlines()
    assert int(lines[0]) >= 300
    assert int(lines[1]) >= 2500  # KB
    assert "P   N   G" in lines[2]


def _get(url: str, host: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_traefik_routes_by_host(sandbox: SandboxInfo) -> None:
    t = sandbox.facts["traefik"]
    base = f"http://{t['host']}:{t['port']}"
    status, body = _get(f"{base}/version", "api.rentguy.sevensa.test")
    assert status == 200
    doc = json.loads(body)
    assert doc["service"] == "rentguy-api" and doc["standin"] is True
    status, body = _get(f"{base}/v1/sys/health", "vault.sevensa.test")
    assert status == 200 and json.loads(body)["sealed"] is False
    status, _ = _get(f"{base}/version", "nope.sevensa.test")
    assert status == 404
    status, body = _get(f"{base}/ping", "127.0.0.10")
    assert status == 200 and body == b"OK"


def test_prometheus_reports_targets_up(sandbox: SandboxInfo) -> None:
    t = sandbox.facts["traefik"]
    status, body = _get(f"http://{t['host']}:{t['port']}/api/v1/targets", "prometheus.sevensa.test")
    assert status == 200
    targets = json.loads(body)["data"]["activeTargets"]
    assert len(targets) >= 18
    assert {x["health"] for x in targets} == {"up"}, [x for x in targets if x["health"] != "up"]
