"""dryRun=All changes nothing; the status subresource and the main resource ignore each other's half."""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from migrator.sandbox.kubeapi import ServerHandle

from .conftest import deployment, http


def test_dry_run_create_returns_object_but_stores_nothing(core: client.CoreV1Api, ns: str, kube: ServerHandle) -> None:
    before = kube.store.current_rv()
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "dry"}, "data": {"a": "1"}}, dry_run="All")
    assert cm.metadata.name == "dry" and cm.data == {"a": "1"} and cm.metadata.uid
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("dry", ns)
    assert err.value.status == 404
    assert kube.store.current_rv() == before
    with pytest.raises(ApiException) as err:  # still validated
        core.create_namespaced_config_map(ns, {"metadata": {"name": "BAD"}}, dry_run="All")
    assert err.value.status == 422


def test_dry_run_update_patch_apply_delete(core: client.CoreV1Api, ns: str, kube: ServerHandle) -> None:
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "keep"}, "data": {"a": "1"}})
    rv = cm.metadata.resource_version
    out = core.replace_namespaced_config_map("keep", ns, {"metadata": {"name": "keep"}, "data": {"a": "2"}},
                                             dry_run="All")
    assert out.data == {"a": "2"}
    out = core.patch_namespaced_config_map("keep", ns, {"data": {"a": "3"}}, dry_run="All")
    assert out.data == {"a": "3"}
    body = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"},
                           "data": {"a": "4"}}).encode()
    code, applied = http("PATCH", f"{kube.url}/api/v1/namespaces/{ns}/configmaps/keep?fieldManager=m&force=true&dryRun=All",
                         body, "application/apply-patch+yaml")
    assert code == 200 and applied["data"] == {"a": "4"}
    code, created = http("PATCH", f"{kube.url}/api/v1/namespaces/{ns}/configmaps/new?fieldManager=m&dryRun=All",
                         body.replace(b"name: keep", b"name: new"), "application/apply-patch+yaml")
    assert code == 201 and created["metadata"]["name"] == "new"
    core.delete_namespaced_config_map("keep", ns, dry_run="All")
    after = core.read_namespaced_config_map("keep", ns)
    assert after.metadata.resource_version == rv and after.data == {"a": "1"}
    assert [i.metadata.name for i in core.list_namespaced_config_map(ns).items] == ["keep"]
    core.delete_namespace(ns, dry_run="All")
    assert core.read_namespace(ns).status.phase == "Active"


def test_status_subresource_separation(apps: client.AppsV1Api, ns: str, kube: ServerHandle) -> None:
    kube.set_failure(ns, "st", "CrashLoopBackOff: keep the simulator from writing status")
    apps.create_namespaced_deployment(ns, deployment("st", ns))
    url = f"{kube.url}/apis/apps/v1/namespaces/{ns}/deployments/st"
    # a status write through the main resource is ignored
    code, obj = http("PATCH", url, {"status": {"replicas": 42}, "spec": {"replicas": 2}},
                     "application/merge-patch+json")
    assert code == 200 and obj["spec"]["replicas"] == 2 and (obj.get("status") or {}).get("replicas") != 42
    # a spec write through /status is ignored
    code, obj = http("PATCH", url + "/status", {"status": {"replicas": 7, "observedGeneration": 9},
                                                "spec": {"replicas": 9}}, "application/merge-patch+json")
    assert code == 200 and obj["status"]["replicas"] == 7 and obj["spec"]["replicas"] == 2
    code, obj = http("GET", url + "/status")
    assert code == 200 and obj["status"]["replicas"] == 7
    status = apps.read_namespaced_deployment_status("st", ns)
    status.status.replicas = 3
    out = apps.replace_namespaced_deployment_status("st", ns, status)
    assert out.status.replicas == 3 and out.metadata.generation == 2
    kube.set_failure(ns, "st", None)
