"""Discovery documents are what kubectl and the dynamic client need to find every resource."""

from __future__ import annotations

from kubernetes.dynamic import DynamicClient

from migrator.sandbox.kubeapi import ServerHandle

from .conftest import Kubectl, http

KINDS = {
    "v1": ["Namespace", "Service", "ConfigMap", "Secret", "ServiceAccount", "PersistentVolumeClaim", "Pod", "Event"],
    "apps/v1": ["Deployment", "StatefulSet", "DaemonSet"],
    "networking.k8s.io/v1": ["Ingress", "NetworkPolicy"],
    "rbac.authorization.k8s.io/v1": ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"],
    "storage.k8s.io/v1": ["StorageClass"],
}


def test_version_and_group_documents(kube: ServerHandle) -> None:
    code, version = http("GET", kube.url + "/version")
    assert code == 200 and version["major"] == "1" and version["gitVersion"].startswith("v1.")
    code, api = http("GET", kube.url + "/api")
    assert code == 200 and api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    code, groups = http("GET", kube.url + "/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {"apps", "networking.k8s.io", "rbac.authorization.k8s.io", "storage.k8s.io"} <= names
    code, apps = http("GET", kube.url + "/apis/apps/v1")
    by_name = {r["name"]: r for r in apps["resources"]}
    assert by_name["deployments"]["namespaced"] is True and "watch" in by_name["deployments"]["verbs"]
    assert by_name["deployments/status"]["verbs"] == ["get", "patch", "update"]
    assert http("GET", kube.url + "/apis/nope.example.com/v1")[0] == 404


def test_dynamic_client_resolves_every_kind(dyn: DynamicClient) -> None:
    for api_version, kinds in KINDS.items():
        for kind in kinds:
            res = dyn.resources.get(api_version=api_version, kind=kind)
            assert res.kind == kind


def test_kubectl_api_resources(kubectl: Kubectl) -> None:
    out = kubectl("api-resources", "-o", "name")
    assert out.returncode == 0, out.stderr
    for name in ("deployments.apps", "statefulsets.apps", "daemonsets.apps", "ingresses.networking.k8s.io",
                 "configmaps", "secrets",
                 "networkpolicies.networking.k8s.io", "storageclasses.storage.k8s.io"):
        assert name in out.stdout.split()


def test_fresh_cluster_has_system_namespaces_and_default_storage_class(kubectl: Kubectl) -> None:
    out = kubectl("get", "ns", "-o", "name")
    assert {"namespace/default", "namespace/kube-system"} <= set(out.stdout.split())
    out = kubectl("get", "storageclass", "standard", "-o", "jsonpath={.provisioner}")
    assert out.returncode == 0 and out.stdout == "sandbox.migrator/hostpath"
