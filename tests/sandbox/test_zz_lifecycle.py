"""status/up are idempotent and secret-free; down leaves nothing behind. (Runs last: it tears down.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from migrator import sandbox as sb
from migrator.sandbox.envfile import NOT_SECRET
from migrator.sandbox.platform import SandboxInfo
from migrator.sandbox.proc import alive

from .helpers import env_of


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""

pytestmark = pytest.mark.sandbox


def test_status_json_has_the_facts_and_no_secret(sandbox: SandboxInfo) -> None:
    info = sb.status(sandbox.dir)
    doc = json.loads(info.to_json())
    assert doc["up"] is True
    for key in ("ssh", "docker", "compose", "dns", "kube", "source_databases", "target_databases", "openbao",
                "uploads", "env_file", "keycloak"):
        assert key in doc
    assert doc["components"]["target-keycloak"]["running"] is True
    assert doc["keycloak"]["target"]["url"] == "http://127.0.0.1:28080"
    assert doc["keycloak"]["target"]["hostname_key"] == "KC_HOSTNAME"
    assert Path(doc["keycloak"]["target"]["env_file"]).stat().st_mode & 0o777 == 0o600
    assert {d["password_env"] for d in doc["source_databases"]} == {
        "RENTGUY_DB_PASSWORD", "PSRA_DB_PASSWORD", "WPCS_DB_PASSWORD", "KEYCLOAK_DB_PASSWORD"}
    text = info.to_json()
    for key, value in env_of(sandbox).items():
        if key not in NOT_SECRET:
            assert value not in text, key
    assert Path(doc["env_file"]).stat().st_mode & 0o777 == 0o600


def test_up_again_changes_nothing(sandbox: SandboxInfo) -> None:
    before = sb.status(sandbox.dir)
    t0 = time.monotonic()
    again = sb.up(sandbox.dir, scale=sandbox.scale or 1)
    assert time.monotonic() - t0 < 60
    assert again.up
    pids = {k: v["pid"] for k, v in before.components.items() if "pid" in v}
    assert pids == {k: v["pid"] for k, v in again.components.items() if "pid" in v}


@pytest.mark.sandbox_teardown
def test_down_leaves_nothing_behind(sandbox: SandboxInfo) -> None:
    t0 = time.monotonic()
    sb.down(sandbox.dir)
    took = time.monotonic() - t0
    left = sb.leftovers(sandbox.dir)
    assert left == {"processes": [], "mounts": [], "files": [], "ports": []}
    for name, comp in sandbox.components.items():
        pid = comp.get("pid")
        if pid:  # gone, a zombie, or a recycled pid that has nothing to do with the sandbox
            assert not alive(pid) or str(sandbox.dir) not in _cmdline(pid), (name, pid, _cmdline(pid))
    assert took < 30
    sb.down(sandbox.dir)  # idempotent
