"""The resource types the stand-in serves, with what discovery advertises about them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False
    # generation is bumped on spec changes only for kinds the real API tracks it for
    tracks_generation: bool = False
    # defined by a CustomResourceDefinition (crd.py): no built-in defaulting, validation or strategic merge
    custom: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}"

    @property
    def singular(self) -> str:
        return self.kind.lower()


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", False, ("ns",), has_status=True),
    Resource("", "v1", "Service", "services", True, ("svc",), has_status=True),
    Resource("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    Resource("", "v1", "Secret", "secrets", True),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
    Resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",), has_status=True),
    Resource("", "v1", "Pod", "pods", True, ("po",), has_status=True),
    Resource("", "v1", "Event", "events", True, ("ev",)),
    Resource("apps", "v1", "Deployment", "deployments", True, ("deploy",), True, True),
    Resource("apps", "v1", "StatefulSet", "statefulsets", True, ("sts",), True, True),
    Resource("apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), True, True),
    Resource("batch", "v1", "Job", "jobs", True, (), True, True),
    Resource("networking.k8s.io", "v1", "Ingress", "ingresses", True, ("ing",), True, True),
    Resource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ("netpol",), False, True),
    Resource("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    Resource("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ("sc",)),
    Resource("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False,
             ("crd", "crds"), has_status=True),
)

BY_KEY: dict[str, Resource] = {r.key: r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    res = BY_KEY.get(f"{group}/{plural}")
    if res is None or res.version != version:
        return None
    return res


def by_kind(kind: str) -> Resource | None:
    return next((r for r in RESOURCES if r.kind == kind), None)


def groups(resources: Sequence[Resource] = RESOURCES) -> dict[str, list[Resource]]:
    """Group name -> resources; '' is the core (legacy /api) group. Pass `crd.all_resources(store)` to
    include the custom resources the store's CRDs define."""
    out: dict[str, list[Resource]] = {}
    for r in resources:
        out.setdefault(r.group, []).append(r)
    return out


NAMESPACE = BY_KEY["/namespaces"]
POD = BY_KEY["/pods"]
CONFIGMAP = BY_KEY["/configmaps"]
EVENT = BY_KEY["/events"]
SERVICE = BY_KEY["/services"]
DEPLOYMENT = BY_KEY["apps/deployments"]
STATEFULSET = BY_KEY["apps/statefulsets"]
DAEMONSET = BY_KEY["apps/daemonsets"]
JOB = BY_KEY["batch/jobs"]
INGRESS = BY_KEY["networking.k8s.io/ingresses"]
PVC = BY_KEY["/persistentvolumeclaims"]
