"""Server-side apply: create, update, ownership per field manager, conflicts, force, kubectl."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError

from migrator.sandbox.kubeapi import ServerHandle

from .conftest import Kubectl, deployment, http


def _managers(obj: dict) -> dict[str, dict]:
    return {e["manager"]: e for e in obj["metadata"]["managedFields"]}


def test_apply_creates_then_updates(kube: ServerHandle, ns: str) -> None:
    url = f"{kube.url}/api/v1/namespaces/{ns}/configmaps/app?fieldManager=deployer"
    body = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
                           "data": {"a": "1", "b": "2"}}).encode()
    code, created = http("PATCH", url, body, "application/apply-patch+yaml")
    assert code == 201 and created["data"] == {"a": "1", "b": "2"} and created["metadata"]["namespace"] == ns
    entry = _managers(created)["deployer"]
    assert entry["operation"] == "Apply" and entry["fieldsV1"] == {"f:data": {"f:a": {}, "f:b": {}}}
    body = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
                           "data": {"a": "10"}}).encode()
    code, updated = http("PATCH", url, body, "application/apply-patch+yaml")
    # b was owned by this manager only and is no longer applied: it is removed
    assert code == 200 and updated["data"] == {"a": "10"}
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    code, same = http("PATCH", url, body, "application/apply-patch+yaml")
    assert same["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]  # no-op apply


def test_two_managers_conflict_then_force(dyn: DynamicClient, ns: str) -> None:
    deploys = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    first = deployment("shared", ns, replicas=2)
    deploys.server_side_apply(first, field_manager="team-a")
    # team-b applies a different field: no conflict, both own their fields
    second = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shared", "namespace": ns,
                                                                         "labels": {"owner": "b"}}}
    obj = deploys.server_side_apply(second, field_manager="team-b").to_dict()
    assert obj["metadata"]["labels"] == {"app": "shared", "owner": "b"} and obj["spec"]["replicas"] == 2
    assert set(_managers(obj)) >= {"team-a", "team-b"}
    # team-b now wants a field team-a owns, with a different value
    clash = {**second, "spec": {"replicas": 5}}
    with pytest.raises(ConflictError) as err:
        deploys.server_side_apply(clash, field_manager="team-b")
    status = json.loads(err.value.body)
    assert status["reason"] == "Conflict" and status["code"] == 409
    assert 'conflict with "team-a"' in status["message"] and ".spec.replicas" in status["message"]
    assert status["details"]["causes"][0]["field"] == ".spec.replicas"
    assert deploys.get(name="shared", namespace=ns).spec.replicas == 2
    forced = deploys.server_side_apply(clash, field_manager="team-b", force_conflicts=True).to_dict()
    assert forced["spec"]["replicas"] == 5
    owners = _managers(forced)
    assert "f:replicas" in owners["team-b"]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in owners["team-a"]["fieldsV1"]["f:spec"]


def test_apply_conflicts_with_an_update_manager(core: client.CoreV1Api, dyn: DynamicClient, ns: str) -> None:
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    cms.server_side_apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns},
                           "data": {"k": "applied"}}, field_manager="gitops")
    core.patch_namespaced_config_map("c", ns, {"data": {"k": "hand-edited"}}, field_manager="operator")
    with pytest.raises(ConflictError):
        cms.server_side_apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns},
                               "data": {"k": "applied"}}, field_manager="gitops")


def test_apply_requires_field_manager_and_kind(kube: ServerHandle, ns: str) -> None:
    url = f"{kube.url}/api/v1/namespaces/{ns}/configmaps/x"
    code, body = http("PATCH", url, b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
                      "application/apply-patch+yaml")
    assert code == 422
    code, body = http("PATCH", url + "?fieldManager=m", b"metadata: {name: x}\n", "application/apply-patch+yaml")
    assert code == 400


def test_kubectl_apply_server_side(kubectl: Kubectl, apps: client.AppsV1Api, ns: str) -> None:
    manifest = yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns},
         "data": {"mode": "k8s"}},
        deployment("web", ns, replicas=2),
    ])
    out = kubectl("apply", "--server-side", "-f", "-", input=manifest)
    assert out.returncode == 0, out.stderr
    assert "deployment.apps/web serverside-applied" in out.stdout
    d = apps.read_namespaced_deployment("web", ns)
    assert d.spec.replicas == 2 and any(m.manager == "kubectl" for m in d.metadata.managed_fields)
    # a second manager via kubectl: conflict without --force-conflicts, success with it
    scaled = manifest.replace("replicas: 2", "replicas: 4")
    out = kubectl("apply", "--server-side", "--field-manager=other", "-f", "-", input=scaled)
    assert out.returncode != 0 and "conflict" in out.stderr.lower()
    out = kubectl("apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-", input=scaled)
    assert out.returncode == 0, out.stderr
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 4


def test_kubectl_get_with_label_selector(kubectl: Kubectl, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "front", "labels": {"tier": "web"}}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "back", "labels": {"tier": "db"}}})
    out = kubectl("get", "configmaps", "-n", ns, "-l", "tier=web", "-o", "name")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["configmap/front"]
    table = kubectl("get", "configmaps", "-n", ns, "-l", "tier in (web,db)")
    assert "NAME" in table.stdout and "front" in table.stdout and "back" in table.stdout


def test_kubectl_client_side_apply_scale_and_delete(kubectl: Kubectl, apps: client.AppsV1Api, ns: str) -> None:
    manifest = yaml.safe_dump(deployment("csa", ns, replicas=2))
    out = kubectl("apply", "-f", "-", input=manifest)
    assert out.returncode == 0, out.stderr
    out = kubectl("apply", "-f", "-", input=manifest.replace("sevensa/app:1.0", "sevensa/app:2.0"))
    assert out.returncode == 0 and "configured" in out.stdout, out.stderr
    d = apps.read_namespaced_deployment("csa", ns)
    assert d.spec.template.spec.containers[0].image == "sevensa/app:2.0" and d.metadata.generation == 2
    out = kubectl("scale", "deployment/csa", "-n", ns, "--replicas=5")
    assert out.returncode == 0, out.stderr
    assert apps.read_namespaced_deployment_scale("csa", ns).spec.replicas == 5
    out = kubectl("delete", "-f", "-", input=manifest)
    assert out.returncode == 0, out.stderr
    assert apps.list_namespaced_deployment(ns).items == []
