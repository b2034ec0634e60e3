"""A PersistentVolumeClaim reached through the API: a helper pod that mounts it, a tar stream into it over
pods/exec, and a sha256 manifest of what it holds. The transport only: what to copy and how to check an
entry (volume.copy's manifest) stays with the step; this takes a tar stream and a target.

The helper pod is created by `claim_helper` (named, labelled `migrator.helper=<purpose>`, restartPolicy
Never, no service account token) and deleted when the block ends; one left by a crash has the same name
and is replaced. It runs `sleep` in an image that has sh, tar, find and sha256sum (busybox is enough).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from migrator.adapters.kube import KubeCluster, Ref, pod_problem
from migrator.adapters.kube_stream import ExecResult, exec_run
from migrator.errors import PermanentError, TemporaryError

MOUNT = "/data"
# sha256sum's two-space form, with the path relative to the mount; busybox find has -type f
MANIFEST = f"cd {MOUNT} && find . -type f -exec sha256sum {{}} +"


def helper_pod(namespace: str, name: str, claim: str, image: str, purpose: str,
               node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": "Never", "automountServiceAccountToken": False,
                            "containers": [{"name": "helper", "image": image, "command": ["sleep", "86400"],
                                            "volumeMounts": [{"name": "target", "mountPath": MOUNT}]}],
                            "volumes": [{"name": "target", "persistentVolumeClaim": {"claimName": claim}}]}
    if node:  # a ReadWriteOnce volume attaches to one node: the helper goes where the claim is mounted
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"migrator.helper": purpose}},
            "spec": spec}


def node_of_claim(cluster: KubeCluster, namespace: str, claim: str, exclude: str) -> str | None:
    """The node of a pod (other than the helper) that mounts the claim, if one is scheduled."""
    for pod in cluster.list_objects("Pod", namespace):
        spec = pod.get("spec") or {}
        if (pod.get("metadata") or {}).get("name") == exclude or not spec.get("nodeName"):
            continue
        if any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in spec.get("volumes") or []):
            return str(spec["nodeName"])
    return None


def start_helper(cluster: KubeCluster, namespace: str, claim: str, *, name: str, image: str, purpose: str,
                 timeout: float = 120.0) -> str:
    """A running pod with the claim mounted at /data (one left by a crash under that name is replaced)."""
    if cluster.get(Ref("PersistentVolumeClaim", claim, namespace)) is None:
        raise PermanentError(f"PersistentVolumeClaim {namespace}/{claim} does not exist")
    ref = Ref("Pod", name, namespace)
    if cluster.get(ref) is not None:  # left by a crash
        cluster.delete(ref)
        _wait_gone(cluster, ref, timeout)
    cluster.apply(helper_pod(namespace, name, claim, image, purpose, node_of_claim(cluster, namespace, claim, name)))
    try:
        _wait_running(cluster, ref, timeout)
    except BaseException:
        cluster.delete(ref)
        raise
    return name


@contextmanager
def claim_helper(cluster: KubeCluster, namespace: str, claim: str, *, name: str, image: str, purpose: str,
                 timeout: float = 120.0) -> Iterator[str]:
    """A running pod with the claim mounted at /data; deleted afterwards (also when the block fails)."""
    start_helper(cluster, namespace, claim, name=name, image=image, purpose=purpose, timeout=timeout)
    try:
        yield name
    finally:
        cluster.delete(Ref("Pod", name, namespace))


def _wait_gone(cluster: KubeCluster, ref: Ref, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while cluster.get(ref) is not None:
        if time.monotonic() > deadline:
            raise TemporaryError(f"{ref} still there {timeout:.0f}s after its deletion")
        time.sleep(0.2)


def _wait_running(cluster: KubeCluster, ref: Ref, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pod = cluster.get(ref) or {}
        status = pod.get("status") or {}
        if status.get("phase") == "Running" and all(
                "running" in (c.get("state") or {}) for c in status.get("containerStatuses") or [{}]):
            return
        if status.get("phase") in ("Failed", "Succeeded"):
            raise PermanentError(f"helper {ref} ended ({status.get('phase')}) before it was used")
        if time.monotonic() > deadline:
            raise TemporaryError(f"helper {ref} not running after {timeout:.0f}s: {pod_problem(pod) or 'Pending'}")
        time.sleep(0.2)


def write_tar(cluster: KubeCluster, namespace: str, pod: str, tar: Iterable[bytes], *,
              timeout: float = 3600.0) -> ExecResult:
    """Unpack a tar stream into the claim (as root, keeping owners and modes: `tar -x -p`)."""
    res = exec_run(cluster, namespace, pod, None, ["tar", "-x", "-p", "-f", "-", "-C", MOUNT], stdin=tar,
                   timeout=timeout)
    if res.code != 0:
        raise TemporaryError(f"tar -x in {namespace}/{pod} exited {res.code}: "
                             f"{res.stderr.decode(errors='replace').strip()[-200:]}")
    return res


def manifest(cluster: KubeCluster, namespace: str, pod: str, *, timeout: float = 3600.0) -> dict[str, str]:
    """{relative path: sha256} of every regular file in the claim, computed in the pod."""
    out = bytearray()
    res = exec_run(cluster, namespace, pod, None, ["sh", "-c", MANIFEST], stdout=out.extend, timeout=timeout)
    if res.code != 0:
        raise TemporaryError(f"manifest in {namespace}/{pod} exited {res.code}: "
                             f"{res.stderr.decode(errors='replace').strip()[-200:]}")
    sums: dict[str, str] = {}
    for line in out.decode(errors="surrogateescape").splitlines():
        digest, _, name = line.partition("  ")
        if digest.startswith("\\"):
            raise PermanentError(f"file name with a newline or backslash in the claim: {name!r}")
        if name:
            sums[name.removeprefix("./")] = digest
    return sums
