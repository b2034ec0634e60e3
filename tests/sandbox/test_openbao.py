"""OpenBao: the VPS's server (raft) holds the platform's secrets with history; the target is up and empty."""

from __future__ import annotations

from pathlib import Path

import hvac
import pytest

from migrator.sandbox import openbao
from migrator.sandbox.platform import SandboxInfo

pytestmark = pytest.mark.sandbox


def _source(sandbox: SandboxInfo) -> hvac.Client:
    src = sandbox.facts["openbao"]["source"]
    token = Path(src["root_token_file"]).read_text().strip()
    return hvac.Client(url=f"http://{src['vps_loopback']['host']}:{src['vps_loopback']['port']}", token=token)


def test_key_files_are_private(sandbox: SandboxInfo) -> None:
    for side in ("source", "target"):
        for key in ("root_token_file", "init_file"):
            p = Path(sandbox.facts["openbao"][side][key])
            assert p.stat().st_mode & 0o777 == 0o600


def test_source_holds_secrets_with_history(sandbox: SandboxInfo) -> None:
    c = _source(sandbox)
    health = c.sys.read_health_status(method="GET")
    assert (health.json() if hasattr(health, "json") else health)["sealed"] is False
    kv = c.secrets.kv.v2
    listed = kv.list_secrets(path="", mount_point="secret")["data"]["keys"]
    assert {"rentguy/", "psra/", "wpcs/", "ai/", "infra/", "monitoring/"} <= set(listed)
    meta = kv.read_secret_metadata(path=openbao.VERSIONED_PATH, mount_point="secret")["data"]
    assert meta["current_version"] == 3
    assert meta["versions"]["1"]["deletion_time"] != "" and meta["versions"]["1"]["destroyed"] is False
    assert meta["custom_metadata"]["owner"] == "sevensa-platform"
    assert meta["custom_metadata"]["domain"] == "rentguy"
    latest = kv.read_secret_version(path=openbao.VERSIONED_PATH, mount_point="secret", raise_on_deleted_version=True)
    assert latest["data"]["data"]["rotated"] == "rotation-3"
    destroyed = kv.read_secret_metadata(path=openbao.DESTROYED_PATH, mount_point="secret")["data"]
    assert destroyed["versions"]["1"]["destroyed"] is True
    for path in openbao.SECRETS:
        assert kv.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)["data"]["data"]


def test_source_policies_and_approles(sandbox: SandboxInfo) -> None:
    c = _source(sandbox)
    policies = set(c.sys.list_acl_policies()["data"]["keys"])
    assert set(openbao.SERVICE_POLICIES) <= policies
    roles = set(c.auth.approle.list_roles()["data"]["keys"])
    assert roles == set(openbao.SERVICE_POLICIES)
    # an AppRole login gets exactly its own secrets
    role_id = c.auth.approle.read_role_id("rentguy-api")["data"]["role_id"]
    secret_id = c.auth.approle.generate_secret_id("rentguy-api")["data"]["secret_id"]
    app = hvac.Client(url=c.url)
    app.auth.approle.login(role_id=role_id, secret_id=secret_id)
    assert app.secrets.kv.v2.read_secret_version(path="rentguy/db", mount_point="secret",
                                                 raise_on_deleted_version=True)["data"]["data"]["username"] == "rentguy"
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v2.read_secret_version(path="psra/db", mount_point="secret", raise_on_deleted_version=True)


def test_target_is_initialized_unsealed_and_empty(sandbox: SandboxInfo) -> None:
    tgt = sandbox.facts["openbao"]["target"]
    c = hvac.Client(url=tgt["address"], token=Path(tgt["root_token_file"]).read_text().strip())
    assert c.sys.is_initialized() and not c.sys.is_sealed()
    assert c.is_authenticated()
    assert "secret/" not in c.sys.list_mounted_secrets_engines()["data"]


def _secret_runbook(sandbox: SandboxInfo, directory: Path, tunnel: bool) -> Path:
    """A runbook whose source OpenBao address answers nothing directly (a closed loopback port, as the
    VPS's public name does once DNS points at the cluster) and is reachable only through the SSH hop."""
    from tests.source.conftest import free_port
    from tests.util import write_runbook

    f = sandbox.facts
    ssh, bao = f["ssh"], f["openbao"]
    openbao_env: dict[str, object] = {
        "source": {"address": f"http://127.0.0.1:{free_port()}", "token": "bao_source_token", "timeout_s": 3},
        "target": {"address": bao["target"]["address"], "token": "bao_target_token"}}
    if tunnel:
        openbao_env["source_via_ssh"] = bao["source"]["vps_loopback"]
    environment = {"source": {"ssh": {"host": ssh["host"], "port": ssh["port"], "user": ssh["user"],
                                      "key_file": ssh["key"], "known_hosts": ssh["known_hosts"]},
                              "address": f["dns"]["vps_address"], "compose_project": f["compose"]["project"]},
                   "openbao": openbao_env}
    secrets = {"bao_source_token": {"file": bao["source"]["root_token_file"]},
               "bao_target_token": {"file": bao["target"]["root_token_file"]},
               "rentguy_db_user": {"openbao": {"path": "rentguy/db", "key": "username"}}}
    # The secret reaches the command through its environment (never argv); the command checks its value.
    step = {"id": "use-secret", "uses": "shell.run", "retries": 0,
            "with": {"command": 'test "$DB_USER" = rentguy', "env": {"DB_USER": "${secrets.rentguy_db_user}"}}}
    return write_runbook(directory, {1: [step]}, environment=environment, secrets=secrets)


def test_secret_references_are_read_through_the_ssh_tunnel(sandbox: SandboxInfo, tmp_path: Path) -> None:
    """{openbao: ...} secrets take environment.openbao.source_via_ssh, like the OpenBao steps do."""
    from tests.util import engine

    eng = engine(_secret_runbook(sandbox, tmp_path / "tunnel", tunnel=True))
    eng.run()
    assert eng.state.steps["use-secret"].status == "succeeded"
    # The same runbook without the hop asks the address itself, where nothing answers.
    from migrator.errors import TemporaryError

    eng = engine(_secret_runbook(sandbox, tmp_path / "direct", tunnel=False))
    with pytest.raises(TemporaryError, match="OpenBao unreachable"):
        eng.run()
    rec = eng.state.steps["use-secret"]
    assert rec.status == "failed" and "OpenBao unreachable" in (rec.error or "")
