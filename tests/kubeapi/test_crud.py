"""create/get/list/replace/delete with the typed client and raw HTTP, including error bodies."""

from __future__ import annotations

import base64

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from migrator.sandbox.kubeapi import ServerHandle

from .conftest import deployment, http


def _status(exc: ApiException) -> dict:
    import json
    return json.loads(exc.body)


def test_create_fills_metadata(core: client.CoreV1Api, ns: str) -> None:
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "conf"}, "data": {"a": "1"}})
    assert cm.metadata.namespace == ns  # filled from the URL
    assert cm.metadata.uid and cm.metadata.creation_timestamp
    assert int(cm.metadata.resource_version) > 0
    again = core.read_namespaced_config_map("conf", ns)
    assert again.metadata.resource_version == cm.metadata.resource_version and again.data == {"a": "1"}


def test_resource_version_is_a_global_counter(core: client.CoreV1Api, ns: str) -> None:
    a = core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    b = core.create_namespaced_service_account(ns, {"metadata": {"name": "b"}})
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)


def test_secret_string_data_is_folded_into_data(core: client.CoreV1Api, ns: str) -> None:
    s = core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"pw": "hunter2"},
                                           "data": {"user": base64.b64encode(b"admin").decode()}})
    assert s.data == {"pw": base64.b64encode(b"hunter2").decode(), "user": base64.b64encode(b"admin").decode()}
    assert s.type == "Opaque"
    assert not getattr(s, "string_data", None)

    # As on a real server: a Secret's type cannot change, nor an immutable Secret's data.
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_secret("s", ns, {"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": s.data})
    assert err.value.status == 422 and _status(err.value)["message"].endswith(
        'type: Invalid value: "kubernetes.io/tls": field is immutable'), _status(err.value)
    core.create_namespaced_secret(ns, {"metadata": {"name": "frozen"}, "immutable": True, "data": s.data})
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_secret("frozen", ns, {"data": {"user": base64.b64encode(b"root").decode()}})
    assert err.value.status == 422 and "data: Forbidden: field is immutable when `immutable` is set" in _status(err.value)["message"]


def test_errors_are_status_bodies(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "dup"}})
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "dup"}})
    body = _status(err.value)
    assert err.value.status == 409 and body["kind"] == "Status" and body["reason"] == "AlreadyExists"
    assert body["details"] == {"name": "dup", "kind": "configmaps"}

    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("missing", ns)
    assert err.value.status == 404 and _status(err.value)["message"] == 'configmaps "missing" not found'

    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, {"metadata": {}})
    body = _status(err.value)
    assert err.value.status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"

    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "Not_Valid"}})
    assert err.value.status == 422 and "RFC 1123" in _status(err.value)["message"]

    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("no-such-ns", {"metadata": {"name": "x"}})
    body = _status(err.value)
    assert err.value.status == 404 and body["message"] == 'namespaces "no-such-ns" not found'

    with pytest.raises(ApiException) as err:
        core.delete_namespaced_config_map("missing", ns)
    assert err.value.status == 404


def test_workload_validation(apps: client.AppsV1Api, ns: str) -> None:
    bad = deployment("web", ns)
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment(ns, bad)
    body = _status(err.value)
    assert err.value.status == 422 and body["message"].startswith('Deployment.apps "web" is invalid')
    assert body["details"]["causes"][0]["field"] == "spec.template.metadata.labels"


def test_bad_request_and_unsupported_media(kube: ServerHandle, ns: str) -> None:
    url = f"{kube.url}/api/v1/namespaces/{ns}/configmaps"
    code, body = http("POST", url, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})
    assert code == 400 and body["reason"] == "BadRequest"
    code, body = http("POST", url, {"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "elsewhere"}})
    assert code == 400
    http("POST", url, {"metadata": {"name": "y"}})
    code, body = http("PATCH", url + "/y", {"data": {}}, content_type="text/plain")
    assert code == 415 and body["reason"] == "UnsupportedMediaType"
    assert http("GET", kube.url + "/api/v1/nothings")[0] == 404


def test_list_with_label_selectors(core: client.CoreV1Api, ns: str) -> None:
    for name, labels in {"a": {"tier": "web", "env": "prod"}, "b": {"tier": "db", "env": "prod"},
                         "c": {"tier": "web"}, "d": {}}.items():
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}})

    def names(selector: str) -> list[str]:
        return sorted(i.metadata.name for i in core.list_namespaced_config_map(ns, label_selector=selector).items)

    assert names("tier=web") == ["a", "c"]
    assert names("tier==web") == ["a", "c"]
    assert names("tier!=web") == ["b", "d"]
    assert names("tier in (web,db),env=prod") == ["a", "b"]
    assert names("tier notin (web)") == ["b", "d"]
    assert names("env") == ["a", "b"]
    assert names("!env") == ["c", "d"]
    with pytest.raises(ApiException) as err:
        names("tier in web")
    assert err.value.status == 400


def test_list_with_field_selectors_and_all_namespaces(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "one"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "two"}})
    items = core.list_namespaced_config_map(ns, field_selector="metadata.name=two").items
    assert [i.metadata.name for i in items] == ["two"]
    items = core.list_namespaced_config_map(ns, field_selector="metadata.name!=two").items
    assert [i.metadata.name for i in items] == ["one"]
    everywhere = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={ns}")
    assert sorted(i.metadata.name for i in everywhere.items) == ["one", "two"]
    assert int(everywhere.metadata.resource_version) >= 1


def test_replace_with_stale_resource_version_conflicts(core: client.CoreV1Api, ns: str) -> None:
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "r"}, "data": {"v": "1"}})
    body = {"metadata": {"name": "r", "resourceVersion": cm.metadata.resource_version}, "data": {"v": "2"}}
    updated = core.replace_namespaced_config_map("r", ns, body)
    assert updated.data == {"v": "2"}
    assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("r", ns, body)  # still carries the old resourceVersion
    assert err.value.status == 409 and _status(err.value)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("r", ns).data == {"v": "2"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("absent", ns, {"metadata": {"name": "absent"}})
    assert err.value.status == 404


def test_generation_bumps_on_spec_changes_only(apps: client.AppsV1Api, ns: str) -> None:
    d = apps.create_namespaced_deployment(ns, deployment("gen", ns))
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("gen", ns, {"metadata": {"labels": {"extra": "x"}}})
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("gen", ns, {"spec": {"replicas": 3}})
    assert d.metadata.generation == 2 and d.spec.replicas == 3


def test_namespace_delete_cascades(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    core.create_namespace({"metadata": {"name": "doomed-ns"}})
    core.create_namespaced_config_map("doomed-ns", {"metadata": {"name": "c"}})
    apps.create_namespaced_deployment("doomed-ns", deployment("d", "doomed-ns"))
    gone = core.delete_namespace("doomed-ns")
    assert gone["status"]["phase"] == "Terminating"
    with pytest.raises(ApiException):
        core.read_namespace("doomed-ns")
    assert core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=doomed-ns").items == []
    assert apps.list_deployment_for_all_namespaces(field_selector="metadata.namespace=doomed-ns").items == []


def test_delete_collection_and_owner_garbage_collection(core: client.CoreV1Api, ns: str) -> None:
    owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner", "labels": {"k": "v"}}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "child", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "loner", "labels": {"k": "v"}}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "keep"}})
    core.delete_collection_namespaced_config_map(ns, label_selector="k=v")
    left = sorted(i.metadata.name for i in core.list_namespaced_config_map(ns).items)
    assert left == ["keep"]  # child went with its owner


def test_cluster_scoped_resources(api_client: client.ApiClient) -> None:
    rbac = client.RbacAuthorizationV1Api(api_client)
    role = rbac.create_cluster_role({"metadata": {"name": "reader-x"},
                                     "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    assert role.metadata.namespace is None
    assert "reader-x" in [r.metadata.name for r in rbac.list_cluster_role().items]
    rbac.delete_cluster_role("reader-x")
