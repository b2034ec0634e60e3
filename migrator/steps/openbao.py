"""openbao.migrate (kv-copy | raft-snapshot) and openbao.verify: OpenBao moved and proven by digests.

kv-copy writes each KV v2 path version by version (flags and metadata included), then the ACL policies
and AppRole roles; facts hold names and progress, never values. raft-snapshot force-restores a source
snapshot into the target and unseals it with the source's keys, after keeping a 0600 snapshot of the
target for rollback. Both are gated by the same value-free comparison (openbao.verify).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.adapters.openbao import sealed
from migrator.errors import PermanentError
from migrator.steps.base import Check, Plan, ReadOnlyStep, Step, state_file, step_type
from migrator.steps.openbao_common import (
    Bao,
    CompareParams,
    Keys,
    MigrateParams,
    PathFilter,
    VerifyParams,
    gate,
    keys_of,
    mounts_to_compare,
    parity,
)
from migrator.steps.openbao_copy import KvCopy, RaftSnapshot
from migrator.store.atomic import write_atomic

if TYPE_CHECKING:
    from migrator.adapters.openbao import BaoClient

# The shared pieces keep their old address (backup steps import Bao and keys_of from here).

__all__ = ["Bao", "CompareParams", "Keys", "MigrateParams", "OpenBaoMigrate", "OpenBaoVerify", "PathFilter",
           "VerifyParams", "gate", "keys_of", "mounts_to_compare", "parity"]


# -- openbao.verify ----------------------------------------------------------------------------------
@step_type("openbao.verify")
class OpenBaoVerify(ReadOnlyStep[VerifyParams]):
    """The gate: same paths, versions, metadata, policies and AppRole roles on both sides, by digest."""

    def verify(self) -> None:
        bao = Bao(self.ctx)
        inv = gate(self.params, bao.source(), bao.target(self.params.target_token))
        self.ctx.log.info("openbao parity", paths=len(inv.kv), policies=len(inv.policies), roles=len(inv.roles))


# -- openbao.migrate ----------------------------------------------------------------------------------
@step_type("openbao.migrate")
class OpenBaoMigrate(Step[MigrateParams]):
    """Copy OpenBao to the target (kv-copy or raft-snapshot); rollback puts the target back as it was."""

    def _bao(self) -> Bao:
        return Bao(self.ctx)

    def _state_file(self, suffix: str) -> Path:
        return state_file(self.ctx, "openbao", f"{self.ctx.runbook.name}.{self.ctx.step_id}.{suffix}")

    def _target_for_compare(self, bao: Bao) -> BaoClient:
        return bao.target_as_source() if self.params.strategy == "raft-snapshot" else bao.target()

    def check(self) -> Check:
        bao = self._bao()
        if self.params.strategy == "raft-snapshot":
            if not self.ctx.facts.get("restored_at"):
                return Check(False, "no restore recorded")
            if sealed(bao.target()):
                return Check(False, "the target is sealed")
        diffs, inv = parity(self.params, bao.source(), self._target_for_compare(bao))
        if diffs:
            return Check(False, f"{len(diffs)} difference(s), e.g. {diffs[0]}")
        return Check(True, f"target matches the source ({len(inv.kv)} paths, {len(inv.policies)} policies, "
                           f"{len(inv.roles)} AppRole roles)")

    def verify(self) -> None:
        bao = self._bao()
        gate(self.params, bao.source(), self._target_for_compare(bao))

    def _strategy(self, strategy: str | None = None) -> KvCopy | RaftSnapshot:
        return RaftSnapshot(self) if (strategy or self.params.strategy) == "raft-snapshot" else KvCopy(self)

    def plan(self) -> Plan:
        return self._strategy().plan()

    def apply(self) -> None:
        self._strategy().apply()

    def rollback(self) -> None:
        self._strategy(self.ctx.facts.get("strategy")).rollback()

    def rollback_plan(self) -> Plan:
        f = self.ctx.facts
        if f.get("strategy") == "raft-snapshot":
            return Plan(changes=[f"force-restore the target's pre-restore snapshot {f.get('pre_snapshot')} and "
                                 "unseal it with target_unseal_keys"] if f.get("pre_snapshot") else [])
        plan = Plan()
        for key in f.get("created", []):
            plan.change(f"delete {key} on the target (created by the copy)")
        for key in f.get("overwritten", []):
            plan.change(f"restore {key} on the target from {f.get('backup_file')}")
        for name in f.get("policies_created", []):
            plan.change(f"delete policy {name}")
        for name in f.get("policies_overwritten", []) + f.get("roles_overwritten", []):
            plan.change(f"restore {name} from {f.get('backup_file')}")
        for name in f.get("roles_created", []):
            plan.change(f"delete AppRole role {name}")
        for m in f.get("auth_enabled", []) + f.get("mounts_enabled", []):
            plan.change(f"disable {m}/ on the target (enabled by the copy)")
        return plan

    def report(self) -> dict[str, Any]:
        f = self.ctx.facts
        keys = ("paths_copied", "versions_written", "policies_copied", "roles_copied", "snapshot_bytes", "seconds")
        return {k: f[k] for k in keys if k in f}

    # -- shared by the strategy modules ----------------------------------------------------------
    def write_private(self, suffix: str, data: bytes) -> tuple[str, str]:
        """A 0600 file under the state dir; returns (path, sha256) for the facts."""
        path = self._state_file(suffix)
        write_atomic(path, data, mode=0o600)
        return str(path), hashlib.sha256(data).hexdigest()

    @staticmethod
    def read_private(path: str, sha256: str) -> bytes:
        data = Path(path).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise PermanentError(f"{path} does not match its recorded sha256; not used")
        return data

    def now(self) -> float:
        return time.time()
