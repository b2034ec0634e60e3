"""Objects a fresh cluster already has: the system namespaces and a default StorageClass."""

from __future__ import annotations

from .api import Api
from .resources import BY_KEY, NAMESPACE

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def seed(api: Api) -> None:
    for ns in SYSTEM_NAMESPACES:
        if api.store.get(NAMESPACE.key, "", ns) is None:
            api.create(NAMESPACE, "", {"metadata": {"name": ns}})
    sc = BY_KEY["storage.k8s.io/storageclasses"]
    if not api.store.select(sc.key):
        api.create(sc, "", {
            "metadata": {"name": "standard",
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "sandbox.migrator/hostpath",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        })
