"""Merge patch, JSON patch and strategic merge patch, over HTTP and as functions."""

from __future__ import annotations

import pytest
from kubernetes import client

from migrator.sandbox.kubeapi import ServerHandle
from migrator.sandbox.kubeapi.errors import ApiError
from migrator.sandbox.kubeapi.patch import json_patch, merge_patch, strategic_merge

from .conftest import deployment, http


def test_merge_patch_replaces_lists_and_deletes_nulls(kube: ServerHandle, apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment("m", ns))
    url = f"{kube.url}/apis/apps/v1/namespaces/{ns}/deployments/m"
    patch = {"metadata": {"labels": {"app": None, "new": "yes"}},
             "spec": {"template": {"spec": {"containers": [{"name": "other", "image": "x:1"}]}}}}
    code, obj = http("PATCH", url, patch, "application/merge-patch+json")
    assert code == 200
    assert obj["metadata"]["labels"] == {"new": "yes"}
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["other"]


def test_json_patch(kube: ServerHandle, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "j"}, "data": {"a": "1", "b": "2"}})
    ops = [{"op": "test", "path": "/data/a", "value": "1"}, {"op": "replace", "path": "/data/a", "value": "9"},
           {"op": "remove", "path": "/data/b"}, {"op": "add", "path": "/data/c", "value": "3"},
           {"op": "add", "path": "/metadata/annotations", "value": {}},
           {"op": "add", "path": "/metadata/annotations/example.com~1x", "value": "y"}]
    cm = core.patch_namespaced_config_map("j", ns, ops)
    assert cm.data == {"a": "9", "c": "3"} and cm.metadata.annotations == {"example.com/x": "y"}
    code, body = http("PATCH", f"{kube.url}/api/v1/namespaces/{ns}/configmaps/j",
                      [{"op": "test", "path": "/data/a", "value": "1"}], "application/json-patch+json")
    assert code == 422 and body["kind"] == "Status"
    assert core.read_namespaced_config_map("j", ns).data == {"a": "9", "c": "3"}


def test_strategic_merge_of_container_list(apps: client.AppsV1Api, ns: str) -> None:
    base = deployment("s", ns)
    base["spec"]["template"]["spec"]["containers"].append(
        {"name": "sidecar", "image": "proxy:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]})
    apps.create_namespaced_deployment(ns, base)
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "proxy:2", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]},
        {"name": "metrics", "image": "exporter:1"},
    ]}}}}
    d = apps.patch_namespaced_deployment("s", ns, patch)  # the client sends strategic-merge-patch+json
    containers = {c.name: c for c in d.spec.template.spec.containers}
    assert list(containers) == ["app", "sidecar", "metrics"]
    assert containers["app"].image == "sevensa/app:1.0"  # untouched, merged by name
    assert containers["sidecar"].image == "proxy:2"
    assert [(e.name, e.value) for e in containers["sidecar"].env] == [("A", "1"), ("B", "20"), ("C", "3")]
    d = apps.patch_namespaced_deployment("s", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"}]}}}})
    assert [c.name for c in d.spec.template.spec.containers] == ["app", "metrics"]
    assert d.metadata.generation == 3


def test_strategic_merge_keys_and_directives() -> None:
    live = {"spec": {"ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
                     "volumeMounts": [{"name": "a", "mountPath": "/a"}], "args": ["x", "y"],
                     "sel": {"k": "v", "drop": "me"}}}
    patch = {"spec": {"ports": [{"containerPort": 443, "$patch": "delete"}, {"containerPort": 80, "protocol": "TCP"}],
                      "volumeMounts": [{"name": "b", "mountPath": "/a"}], "args": ["z"],
                      "sel": {"$patch": "replace", "only": "this"}}}
    out = strategic_merge(live, patch)
    assert out["spec"]["ports"] == [{"containerPort": 80, "name": "http", "protocol": "TCP"}]
    assert out["spec"]["volumeMounts"] == [{"name": "b", "mountPath": "/a"}]  # merged on mountPath
    assert out["spec"]["args"] == ["z"]  # lists without a merge key are replaced
    assert out["spec"]["sel"] == {"only": "this"}
    replaced = strategic_merge(live, {"spec": {"ports": [{"$patch": "replace"}, {"containerPort": 1}]}})
    assert replaced["spec"]["ports"] == [{"containerPort": 1}]


def test_merge_and_json_patch_functions() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    assert json_patch({"l": [1, 3]}, [{"op": "add", "path": "/l/1", "value": 2},
                                       {"op": "add", "path": "/l/-", "value": 4}]) == {"l": [1, 2, 3, 4]}
    assert json_patch({"a": 1}, [{"op": "move", "from": "/a", "path": "/b"}]) == {"b": 1}
    with pytest.raises(ApiError) as err:
        json_patch({"a": 1}, [{"op": "replace", "path": "/missing", "value": 1}])
    assert err.value.code == 422
