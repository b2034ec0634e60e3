"""A stand-in cluster whose pods run for real: a private dockerd plays the node (run under sbx-run).

One dockerd and one stand-in per session (building the images takes a few seconds); a namespace per test.
Short back-offs (0.5 s) keep restart and Job-retry tests quick; the behaviour is the real kubelet's.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from migrator.sandbox import dockerd, images
from migrator.sandbox.kubeapi import NodeOptions, ServerHandle, start_server
from migrator.sandbox.layout import IMAGE_BASE, IMAGE_POSTGRES, IMAGE_STANDIN, Paths
from migrator.sandbox.platform import down

VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
KUBECTL = str(VENV_BIN / "kubectl") if (VENV_BIN / "kubectl").exists() else "kubectl"
BASE, POSTGRES, PYTHON = IMAGE_BASE, IMAGE_POSTGRES, IMAGE_STANDIN  # PYTHON: glibc, python3.11


@pytest.fixture(scope="session")
def node_paths() -> Iterator[Paths]:
    root = Path(f"/tmp/kubenode-{uuid.uuid4().hex[:8]}")  # short: the docker socket path has a length limit
    paths = Paths(root)
    paths.logs.mkdir(parents=True, exist_ok=True)
    dockerd.start(paths, lambda m: None)
    images.build(paths, lambda m: None, only=(BASE, POSTGRES, PYTHON))
    try:
        yield paths
    finally:
        ids = subprocess.run([dockerd.docker_cli(), "ps", "-aq"], env={**os.environ, **dockerd.docker_env(paths)},
                             capture_output=True, text=True, check=False).stdout.split()
        if ids:
            subprocess.run([dockerd.docker_cli(), "rm", "-f", *ids], env={**os.environ, **dockerd.docker_env(paths)},
                           capture_output=True, check=False, timeout=120)
        down(root)


@pytest.fixture(scope="session")
def cluster(node_paths: Paths) -> Iterator[ServerHandle]:
    handle = start_server("127.0.0.1", 0, ready_delay=0.1, kubeconfig_file=node_paths.root / "kubeconfig",
                          node=NodeOptions(node_paths.docker_host, node_paths.root / "kubelet",
                                           restart_backoff=0.5, job_backoff=0.5))
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def api_client(cluster: ServerHandle) -> client.ApiClient:
    assert cluster.kubeconfig is not None
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture(scope="session")
def batch(api_client: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


@pytest.fixture
def ns(core: client.CoreV1Api) -> Iterator[str]:
    name = "n-" + uuid.uuid4().hex[:8]
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)  # its pods' containers go with it: the node does not fill up


@dataclass
class Kubectl:
    env: dict[str, str]

    def __call__(self, *args: str, input: bytes | str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        data = input.encode() if isinstance(input, str) else input
        return subprocess.run([KUBECTL, *args], env=self.env, input=data, capture_output=True, timeout=timeout,
                              check=False)


@pytest.fixture(scope="session")
def kubectl(cluster: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    home = tmp_path_factory.mktemp("kubectl-home")
    return Kubectl({"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(cluster.kubeconfig)})


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def read_pod(core: client.CoreV1Api, ns: str, name: str) -> Any:
    """The pod, or None while it does not exist (between a delete and the controller's new one)."""
    try:
        return core.read_namespaced_pod(name, ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def pod_ready(core: client.CoreV1Api, ns: str, name: str) -> bool:
    pod = read_pod(core, ns, name)
    return pod is not None and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def busybox_pod(name: str, script: str, restart: str = "Always", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": restart,
                            "containers": [{"name": "main", "image": BASE, "command": ["sh", "-c", script]}]}
    spec.update(extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec}


# The source side for volume.copy into a claim: a private VPS (dockerd + sshd) of this package's own.
from tests.source.conftest import vps  # noqa: E402,F401
