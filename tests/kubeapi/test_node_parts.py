"""The parts of the node that need no dockerd: protocol constants, cluster DNS answers, Jobs without a node."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
from kubernetes import client

from migrator.sandbox.kubeapi import ServerHandle
from migrator.sandbox.kubeapi.clusterdns import resolve
from migrator.sandbox.kubeapi.resources import POD, SERVICE
from migrator.sandbox.kubeapi.spdy import DICTIONARY
from migrator.sandbox.kubeapi.store import Store
from migrator.sandbox.kubeapi.websocket import unmask

from .conftest import KUBECTL, wait_for


def test_spdy_dictionary_is_the_one_kubectl_carries() -> None:
    binary = Path(KUBECTL).read_bytes()
    at = binary.find(DICTIONARY[:32])
    assert at > 0 and binary[at:at + len(DICTIONARY)] == DICTIONARY
    assert len(DICTIONARY) == 1423 and DICTIONARY.endswith(b",*,enq=0.")
    z = zlib.compressobj(zdict=DICTIONARY)  # a header block round-trips through both contexts
    packed = z.compress(b"\x00\x00\x00\x01\x00\x00\x00\x04port\x00\x00\x00\x045432") + z.flush(zlib.Z_SYNC_FLUSH)
    assert zlib.decompressobj(zdict=DICTIONARY).decompress(packed).endswith(b"5432")


def test_unmask_matches_the_rfc() -> None:
    mask = os.urandom(4)
    for n in (0, 1, 3, 4, 5, 125, 65536 + 7):
        data = os.urandom(n)
        assert unmask(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def _pod(name: str, ip: str, ready: bool, labels: dict[str, str], **spec: str) -> dict:
    return {"metadata": {"name": name, "namespace": "db", "labels": labels}, "spec": spec,
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_cluster_dns_answers_ready_pods_of_a_service() -> None:
    store = Store()
    store.put(SERVICE.key, {"metadata": {"name": "pg", "namespace": "db"}, "spec": {"selector": {"app": "pg"}}})
    store.put(POD.key, _pod("pg-0", "10.244.0.5", True, {"app": "pg"}, hostname="pg-0", subdomain="pg"))
    store.put(POD.key, _pod("pg-1", "10.244.0.6", False, {"app": "pg"}, hostname="pg-1", subdomain="pg"))
    store.put(POD.key, _pod("other", "10.244.0.7", True, {"app": "x"}))
    assert resolve(store, "pg.db.svc.cluster.local.") == ["10.244.0.5"]
    assert resolve(store, "PG.db.svc.cluster.local") == ["10.244.0.5"]
    assert resolve(store, "pg-0.pg.db.svc.cluster.local.") == ["10.244.0.5"]
    assert resolve(store, "pg-1.pg.db.svc.cluster.local.") is None  # not ready
    assert resolve(store, "nope.db.svc.cluster.local.") is None
    assert resolve(store, "pg.db.") is None  # the search path makes the full name; this one is NXDOMAIN
    assert resolve(store, "example.com.") is None


def test_a_job_without_a_node_gets_its_pod_and_stays_active(kube: ServerHandle, api_client: client.ApiClient,
                                                            core: client.CoreV1Api, ns: str) -> None:
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job(ns, {"metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}}})
    job = batch.read_namespaced_job("j", ns)
    uid = job.metadata.uid
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert job.spec.template.metadata.labels["job-name"] == "j"
    assert (job.spec.backoff_limit, job.spec.completions, job.spec.parallelism) == (6, 1, 1)
    pods = wait_for(lambda: core.list_namespaced_pod(ns, label_selector=f"controller-uid={uid}").items, what="pod")
    assert pods[0].metadata.name.startswith("j-") and pods[0].metadata.owner_references[0].kind == "Job"
    assert wait_for(lambda: batch.read_namespaced_job_status("j", ns).status.active == 1, what="active")


def test_exec_and_logs_need_a_node(kube: ServerHandle, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c",
                                                                                         "image": "busybox:1"}]}})
    with pytest.raises(client.ApiException) as info:
        core.read_namespaced_pod_log("p", ns)
    assert info.value.status == 400 and "no node" in info.value.body
    with pytest.raises(client.ApiException) as info:
        core.read_namespaced_pod_log("missing", ns)
    assert info.value.status == 404


def test_pod_subnet_skips_what_a_route_already_uses(tmp_path: Path) -> None:
    from migrator.sandbox.kubeapi.node import free_pod_subnet

    def table(*routes: tuple[str, str]) -> str:
        import socket
        import struct

        def hexip(ip: str) -> str:
            return f"{struct.unpack('<I', socket.inet_aton(ip))[0]:08X}"

        lines = ["Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT"]
        lines += [f"br0\t{hexip(d)}\t00000000\t0001\t0\t0\t0\t{hexip(m)}\t0\t0\t0" for d, m in routes]
        p = tmp_path / "route"
        p.write_text("\n".join(lines) + "\n")
        return str(p)

    assert free_pod_subnet(table(("0.0.0.0", "0.0.0.0"), ("192.0.2.0", "255.255.255.0"))) == ("10.244.0.0/16",
                                                                                                "10.244.0.1")
    assert free_pod_subnet(table(("10.244.0.0", "255.255.0.0")))[0] == "10.245.0.0/16"
    assert free_pod_subnet(table(("10.244.7.0", "255.255.255.0"), ("10.245.0.0", "255.255.0.0")))[0] == "10.246.0.0/16"
    with pytest.raises(RuntimeError, match="no free /16"):
        free_pod_subnet(table(("10.0.0.0", "255.0.0.0")))
