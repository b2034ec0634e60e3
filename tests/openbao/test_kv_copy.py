"""openbao.migrate kv-copy and openbao.verify between two real `bao server -dev` instances."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrator.errors import PermanentError
from tests.openbao.baoserver import BaoServer
from tests.openbao.conftest import (
    CANARY_VALUE,
    client,
    engine_process,
    kv_copy_step,
    runbook,
    seed,
    token_env,
)
from tests.util import engine

Pair = tuple[BaoServer, BaoServer]


def metadata(server: BaoServer, path: str, mount: str = "secret") -> dict:
    return client(server).secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)["data"]


def updated_times(server: BaoServer) -> dict[str, str]:
    paths = [("secret", "app/db"), ("secret", "app/api"), ("secret", "team/x/y"), ("infra", "dns/tsig")]
    return {f"{m}/{p}": metadata(server, p, m)["updated_time"] for m, p in paths}


@pytest.fixture
def seeded(dev_pair: Pair, monkeypatch: pytest.MonkeyPatch) -> Pair:
    src, tgt = dev_pair
    seed(src)
    for k, v in token_env(src, tgt).items():
        monkeypatch.setenv(k, v)
    return src, tgt


def test_copy_gives_parity_with_versions_flags_and_metadata(seeded: Pair, tmp_path: Path) -> None:
    src, tgt = seeded
    before_src = metadata(src, "app/db")
    rb = runbook(tmp_path / "rb", src, tgt, [kv_copy_step(),
                                             {"id": "check", "uses": "openbao.verify", "needs": ["copy"]}])
    eng = engine(rb)
    assert eng.run() == 2
    assert {s["id"]: s["status"] for s in eng.status()["steps"]} == {"copy": "succeeded", "check": "succeeded"}

    md = metadata(tgt, "app/db")
    assert md["current_version"] == 4 and md["max_versions"] == 7
    assert md["custom_metadata"] == {"owner": "platform", "app": "rentguy"}
    assert md["versions"]["2"]["deletion_time"] and not md["versions"]["2"]["destroyed"]
    assert md["versions"]["3"]["destroyed"]
    assert not md["versions"]["4"]["deletion_time"]
    kv = client(tgt).secrets.kv.v2
    assert kv.read_secret_version(path="app/db", mount_point="secret", raise_on_deleted_version=True)["data"]["data"] == {"password": "db-pass-4"}
    # The deleted version's data came along (recovered on the source, which is deleted again).
    kv.undelete_secret_versions(path="app/db", versions=[2], mount_point="secret")
    assert kv.read_secret_version(path="app/db", version=2, mount_point="secret", raise_on_deleted_version=True)["data"]["data"] == {
        "password": "db-pass-2"}
    kv.delete_secret_versions(path="app/db", versions=[2], mount_point="secret")
    after_src = metadata(src, "app/db")
    assert after_src["versions"]["2"]["deletion_time"] and after_src["current_version"] == 4
    assert before_src["custom_metadata"] == after_src["custom_metadata"]
    assert metadata(tgt, "team/x/y")["cas_required"] is True
    assert metadata(tgt, "dns/tsig", "infra")["delete_version_after"] == before_delete_after(src)
    assert client(tgt).secrets.kv.v2.read_configuration(mount_point="infra")["data"]["max_versions"] == 5
    assert "web" in client(tgt).sys.list_acl_policies()["data"]["keys"]
    role = client(tgt).read("auth/approle/role/web")["data"]
    assert role["token_policies"] == ["web"] and role["token_ttl"] == 1200
    assert (client(tgt).read("auth/approle/role/web/role-id")["data"]["role_id"]
            == client(src).read("auth/approle/role/web/role-id")["data"]["role_id"])
    assert "transit/" not in client(tgt).sys.list_mounted_secrets_engines()["data"]
    facts = eng.state.steps["copy"].facts
    assert sorted(tuple(x) for x in facts["created"]) == [("infra", "dns/tsig"), ("secret", "app/api"),
                                                          ("secret", "app/db"), ("secret", "team/x/y")]
    assert facts["mounts_enabled"] == ["infra"] and facts["auth_enabled"] == ["approle"]

    # Running it again (fresh state) changes nothing: check() finds parity, the target is not written.
    times = updated_times(tgt)
    again = engine(rb, tmp_path / "state2")
    again.run()
    assert any("already in place" in line for line in again.said)
    assert updated_times(tgt) == times


def before_delete_after(server: BaoServer) -> str:
    return str(metadata(server, "dns/tsig", "infra")["delete_version_after"])


def test_gate_fails_naming_a_path_changed_on_the_target(seeded: Pair, tmp_path: Path) -> None:
    src, tgt = seeded
    rb = runbook(tmp_path / "rb", src, tgt, [kv_copy_step()])
    engine(rb).run()
    client(tgt).secrets.kv.v2.create_or_update_secret(path="app/api", secret={"key": "tampered"},
                                                      mount_point="secret")
    check = runbook(tmp_path / "rb2", src, tgt, [{"id": "check", "uses": "openbao.verify",
                                                   "gate": {"timeout": 1, "interval": 0.2}}])
    with pytest.raises(PermanentError) as err:
        engine(check).run()
    assert "secret secret/app/api: differs" in str(err.value)
    assert "app/db" not in str(err.value) and "tampered" not in str(err.value)


def test_conflict_refused_then_overwritten_and_rolled_back(seeded: Pair, tmp_path: Path) -> None:
    src, tgt = seeded
    kv = client(tgt).secrets.kv.v2
    kv.create_or_update_secret(path="app/api", secret={"key": "target-own-1"}, mount_point="secret")
    kv.create_or_update_secret(path="app/api", secret={"key": "target-own-2"}, mount_point="secret")
    kv.create_or_update_secret(path="keep/me", secret={"x": "y"}, mount_point="secret")
    client(tgt).sys.create_or_update_acl_policy("web", 'path "x/*" { capabilities = ["list"] }')
    before = metadata(tgt, "app/api")

    rb = runbook(tmp_path / "rb", src, tgt, [kv_copy_step()])
    with pytest.raises(PermanentError) as err:
        engine(rb).run()
    assert "secret secret/app/api" in str(err.value) and "policy web" in str(err.value)
    assert metadata(tgt, "app/api")["updated_time"] == before["updated_time"]  # nothing written

    rb = runbook(tmp_path / "rb-ow", src, tgt, [kv_copy_step(on_conflict="overwrite", allow_extra_on_target=True)])
    eng = engine(rb)
    eng.run()
    assert kv.read_secret_version(path="app/api", mount_point="secret", raise_on_deleted_version=True)["data"]["data"] == {"key": CANARY_VALUE}
    facts = eng.state.steps["copy"].facts
    assert Path(facts["backup_file"]).stat().st_mode & 0o777 == 0o600

    eng = engine(rb)
    assert eng.rollback(step_id="copy") == 1
    assert kv.read_secret_version(path="app/api", mount_point="secret", raise_on_deleted_version=True)["data"]["data"] == {"key": "target-own-2"}
    assert metadata(tgt, "app/api")["current_version"] == 2
    assert kv.read_secret_version(path="keep/me", mount_point="secret", raise_on_deleted_version=True)["data"]["data"] == {"x": "y"}
    assert kv.list_secrets(path="", mount_point="secret")["data"]["keys"] == ["app/", "keep/"]
    assert kv.list_secrets(path="app/", mount_point="secret")["data"]["keys"] == ["api"]
    assert "list" in client(tgt).sys.read_acl_policy("web")["data"]["policy"]
    assert "infra/" not in client(tgt).sys.list_mounted_secrets_engines()["data"]
    assert "approle/" not in client(tgt).sys.list_auth_methods()["data"]


def test_crash_after_a_path_then_resume(seeded: Pair, tmp_path: Path) -> None:
    src, tgt = seeded
    rb = runbook(tmp_path / "rb", src, tgt, [kv_copy_step()])
    state = tmp_path / "state"
    env = {**token_env(src, tgt), "MIGRATE_FAILPOINTS": "copy:after-path@2=crash"}
    crashed = engine_process("run", rb, state, env)
    assert crashed.returncode == -9, crashed.stderr
    rec = json.loads((state / "bao.state.json").read_text())["steps"]["copy"]
    assert rec["status"] == "running" and len(rec["facts"]["done"]) == 2
    resumed = engine_process("resume", rb, state, token_env(src, tgt))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    check = runbook(tmp_path / "rb2", src, tgt, [{"id": "check", "uses": "openbao.verify"}])
    engine(check).run()
    assert metadata(tgt, "app/db")["current_version"] == 4


def test_plan_lists_what_is_not_migrated(seeded: Pair, tmp_path: Path) -> None:
    src, tgt = seeded
    eng = engine(runbook(tmp_path / "rb", src, tgt, [kv_copy_step()]), dry_run=True)
    eng.run()
    text = "\n".join(eng.said)
    assert "transit/ (transit)" in text and "re-issue" in text and "briefly undeleted on the SOURCE" in text
    assert "infra/" not in client(tgt).sys.list_mounted_secrets_engines()["data"]  # a plan changes nothing
