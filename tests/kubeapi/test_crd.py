"""CustomResourceDefinitions and their custom resources, with the dynamic client and kubectl."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import (
    ConflictError,
    NotFoundError,
    ResourceNotFoundError,
    UnprocessibleEntityError,
)

from migrator.sandbox.kubeapi import ServerHandle

from .conftest import Kubectl, http

SCHEMA = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}


def crd_body(group: str, kind: str, plural: str, *, scope: str = "Namespaced", status: bool = True,
             versions: tuple[str, ...] = ("v1alpha1",), columns: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    vs = []
    for i, v in enumerate(versions):
        entry: dict[str, Any] = {"name": v, "served": True, "storage": i == 0, "schema": SCHEMA}
        if status:
            entry["subresources"] = {"status": {}}
        if columns:
            entry["additionalPrinterColumns"] = columns
        vs.append(entry)
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope, "versions": vs,
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"}}}


@pytest.fixture
def group(api_client: client.ApiClient) -> Iterator[str]:
    """A fresh API group per test (CRDs are cluster-wide and the server is shared); its CRDs go afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}.example.com"
    yield name
    ext = client.ApiextensionsV1Api(api_client)
    for item in ext.list_custom_resource_definition().items:
        if item.spec.group == name:
            ext.delete_custom_resource_definition(item.metadata.name)


def fresh(api_client: client.ApiClient) -> DynamicClient:
    # the dynamic client caches discovery; a new one sees the CRDs created since
    return DynamicClient(api_client)


def test_crd_is_established_and_served(api_client: client.ApiClient, group: str, ns: str) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    created = ext.create_custom_resource_definition(crd_body(group, "Widget", "widgets"))
    conds = {c.type: c.status for c in created.status.conditions}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    assert created.status.accepted_names.kind == "Widget" and created.status.stored_versions == ["v1alpha1"]
    assert ext.read_custom_resource_definition(f"widgets.{group}").spec.group == group
    assert f"widgets.{group}" in [c.metadata.name for c in ext.list_custom_resource_definition().items]
    dyn = fresh(api_client)
    widgets = dyn.resources.get(api_version=f"{group}/v1alpha1", kind="Widget")
    assert widgets.namespaced and widgets.name == "widgets"
    w = widgets.create(body={"apiVersion": f"{group}/v1alpha1", "kind": "Widget",
                             "metadata": {"name": "w1"}, "spec": {"size": 3}}, namespace=ns)
    assert w.metadata.namespace == ns and w.metadata.generation == 1 and w.metadata.uid
    assert widgets.get(name="w1", namespace=ns).spec.size == 3
    assert [i.metadata.name for i in widgets.get(namespace=ns).items] == ["w1"]
    # a custom resource has no built-in defaulting: what was written comes back
    assert w.to_dict()["spec"] == {"size": 3}
    widgets.delete(name="w1", namespace=ns)
    with pytest.raises(NotFoundError):
        widgets.get(name="w1", namespace=ns)


def test_discovery_lists_custom_groups_with_the_preferred_version(kube: ServerHandle, api_client: client.ApiClient,
                                                                  group: str) -> None:
    client.ApiextensionsV1Api(api_client).create_custom_resource_definition(
        crd_body(group, "Gadget", "gadgets", versions=("v1beta1", "v1", "v1alpha1"), scope="Cluster"))
    code, groups = http("GET", f"{kube.url}/apis")
    entry = next(g for g in groups["groups"] if g["name"] == group)
    assert entry["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in entry["versions"]] == ["v1", "v1beta1", "v1alpha1"]
    code, doc = http("GET", f"{kube.url}/apis/{group}/v1beta1")
    assert code == 200
    names = {r["name"]: r for r in doc["resources"]}
    assert names["gadgets"]["namespaced"] is False and names["gadgets"]["kind"] == "Gadget"
    assert "gadgets/status" in names
    code, _ = http("GET", f"{kube.url}/apis/{group}/v2")
    assert code == 404
    # the same objects through every served version; cluster-scoped paths only
    code, _ = http("POST", f"{kube.url}/apis/{group}/v1/gadgets",
                   {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": "g"}})
    assert code == 201
    code, lst = http("GET", f"{kube.url}/apis/{group}/v1beta1/gadgets")
    assert code == 200 and [i["metadata"]["name"] for i in lst["items"]] == ["g"]
    code, _ = http("GET", f"{kube.url}/apis/{group}/v1/namespaces/default/gadgets")
    assert code == 404


def test_invalid_crds_are_refused(api_client: client.ApiClient, group: str) -> None:
    dyn = fresh(api_client)
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    body = crd_body(group, "Thing", "things")
    body["metadata"]["name"] = "wrong.name"
    with pytest.raises(UnprocessibleEntityError) as err:
        crds.create(body=body)
    assert "must be spec.names.plural" in str(err.value.body)
    body = crd_body(group, "Thing", "things")
    body["spec"]["versions"][0]["storage"] = False
    with pytest.raises(UnprocessibleEntityError) as err:
        crds.create(body=body)
    assert "exactly one version marked as storage" in str(err.value.body)
    body = crd_body(group, "Thing", "things", scope="Global")
    with pytest.raises(UnprocessibleEntityError):
        crds.create(body=body)


def test_patches_and_server_side_apply(kube: ServerHandle, api_client: client.ApiClient, group: str,
                                       ns: str) -> None:
    client.ApiextensionsV1Api(api_client).create_custom_resource_definition(crd_body(group, "Route", "routes"))
    dyn = fresh(api_client)
    routes = dyn.resources.get(api_version=f"{group}/v1alpha1", kind="Route")
    body = {"apiVersion": f"{group}/v1alpha1", "kind": "Route", "metadata": {"name": "r"},
            "spec": {"host": "a.test", "weight": 1, "tags": ["x"]}}
    applied = routes.server_side_apply(body=body, namespace=ns, field_manager="migrator")
    assert applied.metadata.managedFields[0].manager == "migrator"
    # merge patch, then JSON patch
    merged = routes.patch(body={"spec": {"weight": 5}}, name="r", namespace=ns, content_type="application/merge-patch+json")
    assert merged.spec.weight == 5 and merged.spec.host == "a.test" and merged.metadata.generation == 2
    patched = routes.patch(body=[{"op": "replace", "path": "/spec/host", "value": "b.test"}], name="r",
                           namespace=ns, content_type="application/json-patch+json")
    assert patched.spec.host == "b.test"
    # a real server refuses strategic merge for custom resources (no patch strategy to merge by)
    code, status = http("PATCH", f"{kube.url}/apis/{group}/v1alpha1/namespaces/{ns}/routes/r", {"spec": {}},
                        "application/strategic-merge-patch+json")
    assert code == 415 and status["reason"] == "UnsupportedMediaType"
    # the JSON and merge patches were Updates by another manager: applying the old value conflicts
    with pytest.raises(ConflictError) as err:
        routes.server_side_apply(body=body, namespace=ns, field_manager="migrator")
    assert ".spec.weight" in json.loads(err.value.body)["message"]
    forced = routes.server_side_apply(body=body, namespace=ns, field_manager="migrator", force_conflicts=True)
    assert forced.spec.weight == 1 and forced.spec.host == "a.test"
    # a dry run changes nothing
    rv = forced.metadata.resourceVersion
    dry = routes.server_side_apply(body={**body, "spec": {"host": "c.test"}}, namespace=ns, field_manager="migrator",
                                   dry_run="All")
    assert dry.spec.host == "c.test" and routes.get(name="r", namespace=ns).metadata.resourceVersion == rv
    # re-applying the same thing is a no-op
    again = routes.server_side_apply(body=body, namespace=ns, field_manager="migrator")
    assert again.metadata.resourceVersion == rv


def test_status_subresource_when_declared(api_client: client.ApiClient, group: str, ns: str) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition(crd_body(group, "App", "apps"))
    ext.create_custom_resource_definition(crd_body(group, "Plain", "plains", status=False))
    dyn = fresh(api_client)
    apps = dyn.resources.get(api_version=f"{group}/v1alpha1", kind="App")
    a = apps.create(body={"apiVersion": f"{group}/v1alpha1", "kind": "App", "metadata": {"name": "a"},
                          "spec": {"x": 1}, "status": {"sync": {"status": "Synced"}}}, namespace=ns)
    assert a.to_dict().get("status") == {}  # status is dropped on create when the subresource exists
    status = dyn.resources.get(api_version=f"{group}/v1alpha1", kind="App").subresources["status"]
    status.patch(body={"status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}}, name="a",
                 namespace=ns, content_type="application/merge-patch+json")
    got = apps.get(name="a", namespace=ns)
    assert got.status.sync.status == "Synced" and got.status.health.status == "Healthy"
    assert got.metadata.generation == 1  # a status write is not a spec change
    # writes to the main resource keep the stored status
    apps.patch(body={"spec": {"x": 2}, "status": {"sync": {"status": "OutOfSync"}}}, name="a", namespace=ns,
               content_type="application/merge-patch+json")
    got = apps.get(name="a", namespace=ns)
    assert got.spec.x == 2 and got.status.sync.status == "Synced" and got.metadata.generation == 2
    # without the subresource, status is part of the object and /status is not served
    plains = dyn.resources.get(api_version=f"{group}/v1alpha1", kind="Plain")
    p = plains.create(body={"apiVersion": f"{group}/v1alpha1", "kind": "Plain", "metadata": {"name": "p"},
                            "status": {"phase": "Done"}}, namespace=ns)
    assert p.status.phase == "Done"
    assert "status" not in plains.subresources


def test_watch_custom_resources(api_client: client.ApiClient, group: str, ns: str) -> None:
    client.ApiextensionsV1Api(api_client).create_custom_resource_definition(crd_body(group, "Job", "jobs"))
    dyn = fresh(api_client)
    jobs = dyn.resources.get(api_version=f"{group}/v1alpha1", kind="Job")
    rv = jobs.get(namespace=ns).metadata.resourceVersion
    seen: list[tuple[str, str, Any]] = []

    def collect() -> None:
        for ev in dyn.watch(jobs, namespace=ns, resource_version=rv, timeout=5):
            seen.append((ev["type"], ev["object"].metadata.name, (ev["raw_object"].get("spec") or {}).get("n")))
            if ev["type"] == "DELETED":
                return

    t = threading.Thread(target=collect)
    t.start()
    body = {"apiVersion": f"{group}/v1alpha1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"n": 1}}
    jobs.create(body=body, namespace=ns)
    jobs.patch(body={"spec": {"n": 2}}, name="j", namespace=ns, content_type="application/merge-patch+json")
    jobs.delete(name="j", namespace=ns)
    t.join(timeout=8)
    assert not t.is_alive()
    assert seen == [("ADDED", "j", 1), ("MODIFIED", "j", 2), ("DELETED", "j", 2)]


def test_deleting_the_crd_or_the_namespace_deletes_the_objects(kube: ServerHandle, api_client: client.ApiClient,
                                                               core: client.CoreV1Api, group: str, ns: str) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition(crd_body(group, "Box", "boxes"))
    base = f"{kube.url}/apis/{group}/v1alpha1/namespaces/{ns}/boxes"
    for name in ("a", "b"):
        code, _ = http("POST", base, {"apiVersion": f"{group}/v1alpha1", "kind": "Box", "metadata": {"name": name}})
        assert code == 201
    other = ns + "-gone"
    core.create_namespace({"metadata": {"name": other}})
    code, _ = http("POST", f"{kube.url}/apis/{group}/v1alpha1/namespaces/{other}/boxes",
                   {"apiVersion": f"{group}/v1alpha1", "kind": "Box", "metadata": {"name": "c"}})
    assert code == 201
    core.delete_namespace(other)
    code, lst = http("GET", f"{kube.url}/apis/{group}/v1alpha1/boxes")
    assert sorted(i["metadata"]["name"] for i in lst["items"]) == ["a", "b"]
    ext.delete_custom_resource_definition(f"boxes.{group}")
    code, _ = http("GET", base)
    assert code == 404
    assert kube.store.select(f"{group}/boxes") == []
    # recreating the CRD does not bring them back
    ext.create_custom_resource_definition(crd_body(group, "Box", "boxes"))
    code, lst = http("GET", base)
    assert code == 200 and lst["items"] == []
    with pytest.raises(ResourceNotFoundError):
        fresh(api_client).resources.get(api_version=f"{group}/v1alpha1", kind="Nothing")


def test_kubectl_with_custom_resources(kubectl: Kubectl, group: str, ns: str) -> None:
    columns = [{"name": "Sync Status", "type": "string", "jsonPath": ".status.sync.status"},
               {"name": "Health", "type": "string", "jsonPath": ".status.health.status"}]
    crd = crd_body(group, "Application", "applications", columns=columns)
    r = kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(crd))
    assert r.returncode == 0, r.stderr
    r = kubectl("wait", "--for=condition=Established", f"crd/applications.{group}", "--timeout=10s")
    assert r.returncode == 0, r.stderr
    app = {"apiVersion": f"{group}/v1alpha1", "kind": "Application",
           "metadata": {"name": "rentguy", "namespace": ns}, "spec": {"project": "default"}}
    r = kubectl("apply", "--server-side", "--field-manager=migrator", "-f", "-", input=yaml.safe_dump(app))
    assert r.returncode == 0 and "serverside-applied" in r.stdout, r.stderr
    r = kubectl("apply", "-f", "-", input=yaml.safe_dump({**app, "spec": {"project": "platform"}}))  # client-side
    assert r.returncode == 0, r.stderr
    r = kubectl("patch", f"applications.{group}", "rentguy", "-n", ns, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}}))
    assert r.returncode == 0, r.stderr
    r = kubectl("get", f"applications.{group}", "-n", ns)
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert header.split() == ["NAME", "SYNC", "STATUS", "HEALTH"] and row.split() == ["rentguy", "Synced", "Healthy"]
    r = kubectl("get", f"applications.{group}", "rentguy", "-n", ns, "-o", "json")
    assert json.loads(r.stdout)["spec"]["project"] == "platform"
    r = kubectl("wait", f"applications.{group}/rentguy", "-n", ns, "--for=jsonpath={.status.health.status}=Healthy",
                "--timeout=10s")
    assert r.returncode == 0, r.stderr
    r = kubectl("delete", f"applications.{group}", "rentguy", "-n", ns)
    assert r.returncode == 0, r.stderr
    r = kubectl("get", f"applications.{group}", "-n", ns, "-o", "name")
    assert r.returncode == 0 and r.stdout.strip() == "", r.stderr
    r = kubectl("delete", "-f", "-", input=yaml.safe_dump(crd))
    assert r.returncode == 0, r.stderr
    r = kubectl("get", f"applications.{group}", "-n", ns)
    assert r.returncode != 0


def test_crds_survive_a_restart(tmp_path: Any, group: str) -> None:
    from migrator.sandbox.kubeapi import start_server
    state = tmp_path / "state.json"
    first = start_server("127.0.0.1", 0, state_file=state)
    try:
        code, _ = http("POST", f"{first.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                       crd_body(group, "Keep", "keeps"))
        assert code == 201
        code, _ = http("POST", f"{first.url}/apis/{group}/v1alpha1/namespaces/default/keeps",
                       {"apiVersion": f"{group}/v1alpha1", "kind": "Keep", "metadata": {"name": "k"}})
        assert code == 201
    finally:
        first.stop()
    second = start_server("127.0.0.1", 0, state_file=state)
    try:
        code, obj = http("GET", f"{second.url}/apis/{group}/v1alpha1/namespaces/default/keeps/k")
        assert code == 200 and obj["kind"] == "Keep"
    finally:
        second.stop()
