"""exec_stream and port_forward at the protocol boundary, against tests/kube/wsstandin.py."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.sandbox.kubeapi import kubeconfig
from tests.kube import wsstandin


def cluster_for(srv: wsstandin.Server, tmp_path: Path) -> Any:
    from migrator.adapters.kube import KubeCluster
    from migrator.runbook.environment import TargetConfig

    path = kubeconfig.write(tmp_path / "kubeconfig", srv.url)
    return KubeCluster(TargetConfig(kubeconfig=str(path), ingress_address="127.0.0.1"), tmp_path)


@pytest.fixture
def v4() -> Iterator[wsstandin.Server]:
    srv = wsstandin.start()
    yield srv
    srv.stop()


def test_exec_stream_feeds_stdin_and_reads_stdout_and_status(v4: wsstandin.Server, tmp_path: Path) -> None:
    kube = cluster_for(v4, tmp_path)
    payload = os.urandom(300_000) + b"\x00\xff end"  # binary, and larger than one frame
    st = kube.exec_stream("rentguy", "rentguy-db-0", "postgres", ["head", "-c", str(len(payload))])
    assert st.protocol == "v4.channel.k8s.io"
    for i in range(0, len(payload), 65536):
        st.write(payload[i:i + 65536])
    code, out = st.wait(timeout=20)
    assert code == 0
    assert out == payload and v4.received == [payload]
    seen = v4.seen[-1]
    assert seen["path"] == "/api/v1/namespaces/rentguy/pods/rentguy-db-0/exec"
    assert seen["query"]["command"] == ["head", "-c", str(len(payload))]
    assert seen["query"]["container"] == ["postgres"] and seen["query"]["stdin"] == ["true"]
    assert seen["authorization"] == f"Bearer {kubeconfig.TOKEN}"
    kube.close()


def test_exec_exit_code_and_stderr(v4: wsstandin.Server, tmp_path: Path) -> None:
    kube = cluster_for(v4, tmp_path)
    st = kube.exec_stream("rentguy", "rentguy-db-0", None, ["sh", "-c", "exit 3"], stdin=False)
    code, out = st.wait(timeout=10)
    assert (code, out) == (3, b"")
    assert bytes(st.stderr) == b"exiting 3\n"
    assert "container" not in v4.seen[-1]["query"]
    kube.close()


def test_v5_close_stdin_sends_eof(tmp_path: Path) -> None:
    srv = wsstandin.start(("v5.channel.k8s.io", "v4.channel.k8s.io"))
    try:
        kube = cluster_for(srv, tmp_path)
        st = kube.exec_stream("wpcs", "wpcs-wordpress-0", "wordpress", ["cat"])
        assert st.protocol == "v5.channel.k8s.io"
        st.write(b"uploads.tar bytes")
        st.close_stdin()
        code, out = st.wait(timeout=10)
        assert (code, out) == (0, b"uploads.tar bytes")
        kube.close()
    finally:
        srv.stop()


def test_port_forward_relays_a_local_listener_to_the_pod(v4: wsstandin.Server, tmp_path: Path) -> None:
    kube = cluster_for(v4, tmp_path)
    with kube.port_forward("rentguy", "rentguy-db-0", 5432) as (host, port):
        assert host == "127.0.0.1"
        for word in (b"hello", b"again"):  # one websocket per local connection
            with socket.create_connection((host, port), timeout=5) as conn:
                conn.sendall(word)
                assert conn.recv(100) == word.upper()
    assert v4.seen[-1]["path"] == "/api/v1/namespaces/rentguy/pods/rentguy-db-0/portforward"
    assert v4.seen[-1]["query"]["ports"] == ["5432"]
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=1)
    kube.close()


def test_reach_uses_the_named_endpoint_or_a_port_forward(v4: wsstandin.Server, tmp_path: Path) -> None:
    from migrator.adapters.kube import reach
    from migrator.runbook.environment import TargetConfig

    eps = {"rentguy-db": {"host": "127.0.0.1", "port": 25432, "namespace": "rentguy", "pod": "rentguy-db-0",
                          "remote_port": 5432}}
    sandbox = TargetConfig(ingress_address="127.0.0.1", data_access="endpoint", endpoints=eps)
    with reach(sandbox, "rentguy-db") as address:
        assert address == ("127.0.0.1", 25432)
    kube = cluster_for(v4, tmp_path)
    real = TargetConfig(ingress_address="127.0.0.1", data_access="port-forward", endpoints=eps)
    with reach(real, "rentguy-db", kube) as (host, port), socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"select")
        assert conn.recv(100) == b"SELECT"
    kube.close()
