"""Fixtures: real `bao` servers on free 127.0.0.1 ports, seeded; runbooks pointing at them.

Tokens reach the migrator through environment variables named by the runbook's secrets (never argv).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from migrator import redact
from migrator.adapters.openbao import wait_kv_ready
from tests.openbao.baoserver import BaoServer, dev_server, raft_server
from tests.util import REPO, write_runbook

CANARY_VALUE = "canary-value-" + secrets.token_hex(8)


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    redact.clear()


@pytest.fixture
def dev_pair(tmp_path: Path) -> Iterator[tuple[BaoServer, BaoServer]]:
    src = dev_server(tmp_path / "bao-src", "canary-root-" + secrets.token_hex(8))
    try:
        tgt = dev_server(tmp_path / "bao-tgt", "tgt-root-" + secrets.token_hex(8))
    except BaseException:
        src.stop()
        raise
    try:
        yield src, tgt
    finally:
        src.stop()
        tgt.stop()


@pytest.fixture
def raft_pair(tmp_path: Path) -> Iterator[tuple[BaoServer, BaoServer]]:
    src = raft_server(tmp_path / "raft-src")
    try:
        tgt = raft_server(tmp_path / "raft-tgt")
    except BaseException:
        src.stop()
        raise
    try:
        yield src, tgt
    finally:
        src.stop()
        tgt.stop()


def client(server: BaoServer, token: str | None = None) -> hvac.Client:
    return hvac.Client(url=server.address, token=token or server.token)


def seed(server: BaoServer) -> None:
    """Several secrets, several versions, a deleted and a destroyed version, custom metadata, a second KV
    mount, a policy, an AppRole role, and engines that kv-copy does not migrate."""
    c = client(server)
    kv = c.secrets.kv.v2
    for i in range(1, 5):
        kv.create_or_update_secret(path="app/db", secret={"password": f"db-pass-{i}"}, mount_point="secret")
    kv.delete_secret_versions(path="app/db", versions=[2], mount_point="secret")
    kv.destroy_secret_versions(path="app/db", versions=[3], mount_point="secret")
    kv.update_metadata(path="app/db", max_versions=7, custom_metadata={"owner": "platform", "app": "rentguy"},
                       mount_point="secret")
    kv.create_or_update_secret(path="app/api", secret={"key": "first"}, mount_point="secret")
    kv.create_or_update_secret(path="app/api", secret={"key": CANARY_VALUE}, mount_point="secret")
    kv.update_metadata(path="team/x/y", cas_required=True, mount_point="secret")
    kv.create_or_update_secret(path="team/x/y", secret={"a": "1", "b": "2"}, cas=0, mount_point="secret")
    c.sys.enable_secrets_engine("kv", path="infra", options={"version": "2"})
    wait_kv_ready(c, "infra")  # a raft-backed server upgrades a new KV v2 mount for a moment
    kv.configure(max_versions=5, mount_point="infra")
    kv.create_or_update_secret(path="dns/tsig", secret={"secret": "tsig-key-1"}, mount_point="infra")
    kv.update_metadata(path="dns/tsig", delete_version_after="1000h", mount_point="infra")
    c.sys.create_or_update_acl_policy("web", 'path "secret/data/app/*" { capabilities = ["read"] }')
    c.sys.enable_auth_method("approle", path="approle")
    c.auth.approle.create_or_update_approle("web", token_policies=["web"], secret_id_ttl="1h", token_ttl="20m")
    c.sys.enable_secrets_engine("transit", path="transit")


def environment(src: BaoServer, tgt: BaoServer) -> dict[str, Any]:
    return {"openbao": {"source": {"address": src.address, "token": "bao_source_token"},
                        "target": {"address": tgt.address, "token": "bao_target_token"}}}


SECRETS = {"bao_source_token": {"env": "T_BAO_SRC_TOKEN"}, "bao_target_token": {"env": "T_BAO_TGT_TOKEN"}}


def token_env(src: BaoServer, tgt: BaoServer) -> dict[str, str]:
    return {"T_BAO_SRC_TOKEN": src.token, "T_BAO_TGT_TOKEN": tgt.token}


def runbook(directory: Path, src: BaoServer, tgt: BaoServer, steps: list[dict[str, Any]],
            secrets_: dict[str, Any] | None = None) -> Path:
    return write_runbook(directory, {1: steps}, name="bao", environment=environment(src, tgt),
                         secrets={**SECRETS, **(secrets_ or {})})


def kv_copy_step(step_id: str = "copy", **with_: Any) -> dict[str, Any]:
    return {"id": step_id, "uses": "openbao.migrate", "with": {"strategy": "kv-copy", **with_},
            "gate": {"timeout": 5, "interval": 0.2}}


DRIVER = """
import sys
from pathlib import Path
from tests.util import engine
eng = engine(Path(sys.argv[2]), Path(sys.argv[3]))
{"run": eng.run, "resume": eng.resume, "plan": eng.plan}[sys.argv[1]]() if sys.argv[1] != "rollback" else eng.rollback(step_id=sys.argv[4])
print("\\n".join(eng.said))
"""


def engine_process(command: str, rb: Path, state: Path, env: dict[str, str], *extra: str,
                   timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The engine in a child process (a `crash` failpoint SIGKILLs it). The CLI would do, but it is being
    edited by others in this tree right now; this drives the same Engine without it."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-c", DRIVER, command, str(rb), str(state), *extra], env=full,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
