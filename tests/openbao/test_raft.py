"""openbao.migrate raft-snapshot between two raft-backed `bao` servers (init + unseal, non-dev)."""

from __future__ import annotations

import json
from pathlib import Path

import hvac
import pytest

from tests.openbao.baoserver import BaoServer
from tests.openbao.conftest import CANARY_VALUE, client, runbook, seed, token_env
from tests.util import engine

Pair = tuple[BaoServer, BaoServer]


def raft_step(**extra: object) -> dict[str, object]:
    return {"id": "restore", "uses": "openbao.migrate", "gate": {"timeout": 20, "interval": 0.5},
            "with": {"strategy": "raft-snapshot", "unseal_keys": "${secrets.bao_source_unseal}",
                     "target_unseal_keys": ["${secrets.bao_target_unseal_1}"], **extra}}


def test_raft_snapshot_restore_unseal_and_rollback(raft_pair: Pair, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src, tgt = raft_pair
    seed(src)
    client(tgt).secrets.kv.v2.create_or_update_secret(path="target/own", secret={"v": "before"}, mount_point="secret")
    for k, v in token_env(src, tgt).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("T_BAO_SRC_UNSEAL", json.dumps(src.unseal_keys))  # one secret holding a JSON list
    monkeypatch.setenv("T_BAO_TGT_UNSEAL_1", tgt.unseal_keys[0])
    extra_secrets = {"bao_source_unseal": {"env": "T_BAO_SRC_UNSEAL"},
                     "bao_target_unseal_1": {"env": "T_BAO_TGT_UNSEAL_1"}}
    rb = runbook(tmp_path / "rb", src, tgt, [raft_step()], extra_secrets)
    eng = engine(rb)
    eng.run()
    facts = eng.state.steps["restore"].facts
    snap = Path(facts["pre_snapshot"])
    assert snap.stat().st_mode & 0o777 == 0o600 and facts["pre_snapshot_sha256"]
    assert facts["restored_at"]

    # The target now holds the source's data and answers to the source's token, not its own.
    as_src = client(tgt, src.token)
    data = as_src.secrets.kv.v2.read_secret_version(path="app/api", mount_point="secret",
                                                    raise_on_deleted_version=True)["data"]["data"]
    assert data == {"key": CANARY_VALUE}
    assert "web" in as_src.sys.list_acl_policies()["data"]["keys"]
    with pytest.raises(hvac.exceptions.Forbidden):
        client(tgt).secrets.kv.v2.list_secrets(path="", mount_point="secret")

    # openbao.verify after a raft move: the target's token is the source's.
    check = runbook(tmp_path / "rb2", src, tgt, [{"id": "check", "uses": "openbao.verify",
                                                  "with": {"target_token": "bao_source_token"}}])
    engine(check).run()

    # Rollback: the target's own snapshot back, unsealed with its own keys, its own token valid again.
    assert engine(rb).rollback(step_id="restore") == 1
    own = client(tgt)
    assert own.secrets.kv.v2.list_secrets(path="", mount_point="secret")["data"]["keys"] == ["target/"]
    assert own.secrets.kv.v2.read_secret_version(path="target/own", mount_point="secret",
                                                 raise_on_deleted_version=True)["data"]["data"] == {"v": "before"}
    assert "infra/" not in own.sys.list_mounted_secrets_engines()["data"]

    # Neither unseal keys nor tokens in the state, the journal or what the engine said.
    said = "\n".join(eng.said)
    for canary in [*src.unseal_keys, *tgt.unseal_keys, src.token, tgt.token, CANARY_VALUE]:
        assert canary not in said
        for path in (tmp_path / "rb" / "state").glob("bao.*"):
            assert canary.encode() not in path.read_bytes(), path


def test_raft_needs_unseal_keys(tmp_path: Path) -> None:
    from migrator.errors import InputError
    from migrator.steps.catalogue import load_runbook

    nowhere = BaoServer(tmp_path, 1, None, token="x")  # type: ignore[arg-type]
    rb = runbook(tmp_path / "rb", nowhere, nowhere, [{"id": "restore", "uses": "openbao.migrate",
                                                      "with": {"strategy": "raft-snapshot"}}])
    with pytest.raises(InputError) as err:
        load_runbook(rb)
    assert "unseal_keys" in " ".join(err.value.problems)
