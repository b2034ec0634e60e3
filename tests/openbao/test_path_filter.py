"""openbao.migrate/openbao.verify with a path filter (`paths: [secret/acme/*]`): another tenant's secrets
in the same mount are neither copied nor compared."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.openbao.baoserver import BaoServer
from tests.openbao.conftest import client, kv_copy_step, runbook, token_env
from tests.util import engine, migrate

Pair = tuple[BaoServer, BaoServer]


def test_only_the_selected_prefix_is_copied_and_verified(dev_pair: Pair, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    src, tgt = dev_pair
    for k, v in token_env(src, tgt).items():
        monkeypatch.setenv(k, v)
    kv = client(src).secrets.kv.v2
    for path in ("acme/db", "acme/deep/api", "acme-other/x", "globex/db"):
        kv.create_or_update_secret(path=path, secret={"v": path}, mount_point="secret")
    kv.create_or_update_secret(path="acme/db", secret={"v": "second"}, mount_point="secret")
    rb = runbook(tmp_path / "rb", src, tgt, [
        kv_copy_step(paths=["secret/acme/*"], policies=False, approle=False),
        {"id": "check", "uses": "openbao.verify", "needs": ["copy"],
         "with": {"paths": ["secret/acme/*"], "policies": False, "approle": False}}])
    assert engine(rb).run() == 2
    tkv = client(tgt).secrets.kv.v2

    def listed(prefix: str = "") -> set[str]:
        out: set[str] = set()
        for key in tkv.list_secrets(path=prefix, mount_point="secret")["data"]["keys"]:
            out |= listed(prefix + key) if key.endswith("/") else {prefix + key}
        return out

    assert listed() == {"acme/db", "acme/deep/api"}  # not acme-other/ (no '/' after acme) nor globex/
    assert tkv.read_secret_metadata(path="acme/db", mount_point="secret")["data"]["current_version"] == 2
    # a change outside the filter does not fail the filtered gate; one inside does
    kv.create_or_update_secret(path="globex/db", secret={"v": "changed"}, mount_point="secret")
    state = tmp_path / "rb" / "state"
    proc = migrate("run", "-r", str(rb), "--step", "check", "--state-dir", str(state))
    assert proc.returncode == 0, proc.stderr
    kv.create_or_update_secret(path="acme/deep/api", secret={"v": "changed"}, mount_point="secret")
    migrate("stamp", "--step", "check", "--status", "pending", "-r", str(rb), "--state-dir", str(state))
    proc = migrate("run", "-r", str(rb), "--step", "check", "--state-dir", str(state))
    assert proc.returncode == 1 and "secret/acme/deep/api" in proc.stderr, proc.stderr


@pytest.mark.parametrize("with_, expected", [
    ({"paths": ["*/acme"]}, "'*/acme' is not MOUNT/PATH"),
    ({"paths": ["secret"]}, "'secret' is not MOUNT/PATH"),
    ({"paths": ["secret/acme/*"], "strategy": "raft-snapshot", "unseal_keys": "${secrets.bao_source_token}"},
     "a path filter needs strategy kv-copy"),
])
def test_a_bad_filter_is_refused_at_load(tmp_path: Path, with_: dict[str, object], expected: str) -> None:
    from tests.util import write_runbook

    step = kv_copy_step(**with_)
    rb = write_runbook(tmp_path, {1: [step]}, environment={"openbao": {
        "source": {"address": "http://127.0.0.1:1", "token": "t"}, "target": {"address": "http://127.0.0.1:2",
                                                                            "token": "t"}}},
        secrets={"t": {"env": "T_TOKEN"}, "bao_source_token": {"env": "T_TOKEN"}})
    proc = migrate("plan", "-r", str(rb), "--state-dir", str(tmp_path / "st"), env={"T_TOKEN": "tok-123456"})
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
