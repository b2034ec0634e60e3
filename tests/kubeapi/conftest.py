"""One stand-in per test session (in-process), a fresh namespace per test, and kubectl wired to it."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient

from migrator.sandbox.kubeapi import ServerHandle, start_server

VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
KUBECTL = str(VENV_BIN / "kubectl") if (VENV_BIN / "kubectl").exists() else "kubectl"


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    home = tmp_path_factory.mktemp("kubeapi")
    handle = start_server("127.0.0.1", 0, ready_delay=0.2, kubeconfig_file=home / "kubeconfig",
                          ingress="127.0.0.1:0", failures={"preset/doomed": "CrashLoopBackOff: preset failure"})
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def api_client(kube: ServerHandle) -> client.ApiClient:
    assert kube.kubeconfig is not None
    return config.new_client_from_config(config_file=str(kube.kubeconfig))


@pytest.fixture(scope="session")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture(scope="session")
def dyn(api_client: client.ApiClient) -> DynamicClient:
    return DynamicClient(api_client)


@pytest.fixture
def ns(core: client.CoreV1Api) -> str:
    name = "t-" + uuid.uuid4().hex[:8]
    core.create_namespace({"metadata": {"name": name}})
    return name


@dataclass
class Kubectl:
    env: dict[str, str]

    def __call__(self, *args: str, input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL, *args], env=self.env, input=input, capture_output=True, text=True,
                              timeout=timeout, check=False)


@pytest.fixture(scope="session")
def kubectl(kube: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    home = tmp_path_factory.mktemp("kubectl-home")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(kube.kubeconfig)}
    return Kubectl(env)


def http(method: str, url: str, body: Any = None, content_type: str = "application/json",
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """Raw request; returns (status, decoded JSON or text)."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw, code = resp.read(), resp.status
    except urllib.error.HTTPError as err:
        raw, code = err.read(), err.code
    try:
        return code, json.loads(raw)
    except ValueError:
        return code, raw.decode()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def deployment(name: str, ns: str, replicas: int = 1, annotations: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = labels or {"app": name}
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": "sevensa/app:1.0",
                                                       "ports": [{"containerPort": 8080}]}]}}},
    }
