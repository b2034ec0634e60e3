"""A tar stream into a PVC through a helper pod (migrator/adapters/kube_volume.py), resumed by manifest."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from migrator.adapters.kube import Ref
from migrator.sandbox.kubeapi import ServerHandle

from .conftest import BASE
from .test_streams import kube_cluster


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o640, 33, 33
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def chunks(data: bytes, size: int = 65536, fail_after: int | None = None) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        if fail_after is not None and i >= fail_after:
            raise ConnectionResetError("the source was cut off")
        yield data[i:i + size]


@pytest.fixture
def kube(cluster: ServerHandle, tmp_path: Path) -> Iterator[Any]:
    k = kube_cluster(cluster, tmp_path)
    yield k
    k.close()


def test_tar_into_a_claim_resumes_by_manifest(kube: Any, core: client.CoreV1Api, ns: str) -> None:
    from migrator.adapters.kube_volume import claim_helper, manifest, write_tar

    core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": "uploads"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    files = {f"2026/{m:02d}/img-{i}.bin": os.urandom(50_000 + i) for m in (1, 2) for i in range(10)}
    files["readme.txt"] = b"uploads\n"
    want = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    whole = tar_of(files)
    helper = {"name": "copy-uploads", "image": BASE, "purpose": "copy-uploads"}
    # a copy cut off part-way: what landed is what the manifest says, a half-written file included
    with claim_helper(kube, ns, "uploads", **helper) as pod, pytest.raises(ConnectionResetError):
        write_tar(kube, ns, pod, chunks(whole, fail_after=len(whole) // 2), timeout=60)
    assert kube.get(Ref("Pod", "copy-uploads", ns)) is None  # the helper is removed even then
    with claim_helper(kube, ns, "uploads", **helper) as pod:
        have = manifest(kube, ns, pod)
        assert 0 < len(have) < len(files)
        todo = {n: d for n, d in files.items() if have.get(n) != want[n]}
        assert len(todo) < len(files)
        res = write_tar(kube, ns, pod, chunks(tar_of(todo)), timeout=60)
        assert res.bytes_in < len(whole)  # verified files are not sent again
        assert manifest(kube, ns, pod) == want
        ls = bytearray()
        from migrator.adapters.kube_stream import exec_run

        exec_run(kube, ns, pod, None, ["stat", "-c", "%u %g %a", "/data/readme.txt"], stdout=ls.extend)
        assert ls.decode().split() == ["33", "33", "640"]
    # the data lives in the claim, not in the helper: another pod sees it
    with claim_helper(kube, ns, "uploads", name="verify", image=BASE, purpose="verify") as pod:
        assert manifest(kube, ns, pod) == want


def test_a_missing_claim_is_a_clear_error(kube: Any, ns: str) -> None:
    from migrator.adapters.kube_volume import claim_helper
    from migrator.errors import PermanentError

    with pytest.raises(PermanentError, match=f"PersistentVolumeClaim {ns}/nope does not exist"), \
            claim_helper(kube, ns, "nope", name="h", image=BASE, purpose="x"):
        pass
