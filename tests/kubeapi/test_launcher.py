"""The background process the sandbox orchestrator starts: pid file, kubeconfig, SIGTERM, state."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import yaml

from migrator.sandbox.kubeapi import kubeconfig_path, spawn, stop

from .conftest import KUBECTL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_spawn_writes_pid_and_kubeconfig_and_keeps_state(tmp_path: Path) -> None:
    port = _free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig_path(tmp_path))}
    pid = spawn(tmp_path, port)
    try:
        assert (tmp_path / "kubeapi.pid").read_text().strip() == str(pid)
        kc = yaml.safe_load(kubeconfig_path(tmp_path).read_text())
        assert kc["current-context"] == "sandbox"
        assert kc["clusters"][0]["cluster"]["server"] == f"http://127.0.0.1:{port}"
        out = subprocess.run([KUBECTL, "create", "configmap", "kept", "--from-literal=a=b", "--dry-run=client",
                              "-o", "yaml"], env=env, capture_output=True, text=True, timeout=20)
        applied = subprocess.run([KUBECTL, "apply", "--server-side", "-f", "-"], input=out.stdout, env=env,
                                 capture_output=True, text=True, timeout=20)
        assert applied.returncode == 0, applied.stderr
    finally:
        assert stop(tmp_path)
    assert not (tmp_path / "kubeapi.pid").exists()
    pid2 = spawn(tmp_path, port)
    try:
        assert pid2 != pid
        got = subprocess.run([KUBECTL, "get", "configmap", "kept", "-o", "jsonpath={.data.a}"], env=env,
                             capture_output=True, text=True, timeout=20)
        assert got.stdout == "b", got.stderr  # the state file carried it over
    finally:
        stop(tmp_path)
