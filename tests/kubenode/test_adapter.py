"""The migrator's own data path through the API (migrator/adapters/kube_stream.py) against real pods."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from migrator.errors import TemporaryError
from migrator.sandbox.kubeapi import ServerHandle

from .conftest import busybox_pod, pod_ready, wait_for
from .test_jobs import job
from .test_streams import kube_cluster


@pytest.fixture
def kube(cluster: ServerHandle, tmp_path: Path) -> Iterator[Any]:
    k = kube_cluster(cluster, tmp_path)
    yield k
    k.close()


@pytest.fixture
def box(core: client.CoreV1Api, ns: str) -> str:
    core.create_namespaced_pod(ns, busybox_pod("box", "exec sleep 3600"))
    wait_for(lambda: pod_ready(core, ns, "box"), what="box ready")
    return "box"


def test_exec_run_streams_an_iterator_in_and_a_sink_out(kube: Any, ns: str, box: str) -> None:
    from migrator.adapters.kube_stream import exec_run

    chunks = [os.urandom(100_000) for _ in range(40)]  # 4 MB, produced lazily
    out = hashlib.sha256()
    res = exec_run(kube, ns, box, None, ["sh", "-c", "cat; echo done >&2"], stdin=iter(chunks), stdout=out.update)
    assert res.code == 0 and res.stderr == b"done\n"
    assert res.bytes_in == res.bytes_out == 4_000_000
    assert out.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    # the manifest on the pod's side agrees with ours
    got = bytearray()
    res = exec_run(kube, ns, box, "main", ["sha256sum"], stdin=iter(chunks), stdout=got.extend)
    assert got.split()[0].decode() == hashlib.sha256(b"".join(chunks)).hexdigest()
    res = exec_run(kube, ns, box, None, ["sh", "-c", "exit 4"])
    assert res.code == 4


def test_exec_run_reports_a_source_that_fails(kube: Any, ns: str, box: str) -> None:
    from migrator.adapters.kube_stream import exec_run

    def source() -> Iterator[bytes]:
        yield b"x" * 1000
        raise OSError("the source went away")

    with pytest.raises(OSError, match="the source went away"):
        exec_run(kube, ns, box, None, ["cat"], stdin=source(), stdout=lambda b: None, timeout=30)


def test_exec_run_is_bounded(kube: Any, ns: str, box: str) -> None:
    from migrator.adapters.kube_stream import exec_run

    with pytest.raises(TemporaryError, match="still running after 2s"):
        exec_run(kube, ns, box, None, ["sleep", "30"], timeout=2)


def test_wait_for_job_follows_its_log(kube: Any, batch: client.BatchV1Api, ns: str) -> None:
    from migrator.adapters.kube_stream import wait_for_job

    batch.create_namespaced_job(ns, job("copy", "for i in 1 2 3; do echo progress $i; sleep 0.2; done"))
    lines: list[str] = []
    outcome = wait_for_job(kube, ns, "copy", on_line=lines.append, timeout=60)
    assert outcome.succeeded and outcome.reason == "CompletionsReached"
    assert lines == ["progress 1", "progress 2", "progress 3"]
    batch.create_namespaced_job(ns, job("bad", "echo boom; exit 2", backoff=0))
    lines.clear()
    outcome = wait_for_job(kube, ns, "bad", on_line=lines.append, timeout=60)
    assert not outcome.succeeded and outcome.reason == "BackoffLimitExceeded"
    assert lines == ["boom"] and len(outcome.pods) == 1


def test_wait_for_job_times_out_and_reattaches(kube: Any, batch: client.BatchV1Api, ns: str) -> None:
    from migrator.adapters.kube_stream import wait_for_job

    batch.create_namespaced_job(ns, job("slow", "sleep 3; echo finished"))
    with pytest.raises(TemporaryError, match="still running"):
        wait_for_job(kube, ns, "slow", timeout=0.5)
    lines: list[str] = []
    outcome = wait_for_job(kube, ns, "slow", on_line=lines.append, timeout=60)  # the same Job, not a second
    assert outcome.succeeded and lines == ["finished"] and len(outcome.pods) == 1
