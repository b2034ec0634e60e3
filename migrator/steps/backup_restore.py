"""backup.restore: a target brought back from a backup.create backup (the drill, or a disaster).

The backup is named by the backup.create step that made it (`backup_step`: its recorded folder) or by
its folder (`name`), at the same kind of destination (`from`). Every artefact is fetched under the state
dir and its sha256 checked against the manifest BEFORE anything is restored: a backup with one artefact
that does not match is refused whole, and the target is left as it was. Then: each database (pg_restore:
replaced in one transaction, or created when it is gone), each MySQL database (dropped, created again and
the dump loaded), each Redis (its databases emptied, every key RESTOREd with REPLACE and what is left of its
TTL; a key that expired meanwhile is skipped and counted), each volume (unpacked beside its directory,
every file checked against the manifest, then swapped in), the OpenBao snapshot (force restore, unsealed
with `openbao_unseal_keys` if the node seals itself). A restore replaces what is there: not reversible.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field, model_validator

from migrator.errors import PermanentError
from migrator.steps import backup_common as bc
from migrator.steps import backup_parts as parts
from migrator.steps import backup_stores as stores
from migrator.steps.base import Check, Plan, Step, StrictModel, step_type
from migrator.steps.mysql import MyTargetParams
from migrator.steps.openbao import keys_of
from migrator.steps.postgres.pg_common import TargetParams
from migrator.steps.redis import RedisTargetParams
from migrator.steps.volume_manifest import sha256_of

Part = Literal["postgres", "mysql", "redis", "openbao", "volume"]
ALL_PARTS: tuple[Part, ...] = ("postgres", "mysql", "redis", "openbao", "volume")


class RestoreParams(StrictModel):
    from_: bc.Destination = Field(alias="from")
    backup_step: str | None = None  # the backup.create step whose backup this is
    name: str | None = None  # or the backup's folder at the destination
    parts: list[Part] = Field(default_factory=lambda: list(ALL_PARTS))
    # The databases' credentials: default, the runbook's postgres.copy targets (matched by endpoint, database).
    databases: list[TargetParams] | None = None
    # The same for MySQL (the mysql.copy targets, by endpoint and database) and Redis (redis.copy's, by endpoint).
    mysql: list[MyTargetParams] | None = None
    redis: list[RedisTargetParams] | None = None
    openbao_unseal_keys: list[str] | str | None = None  # ${secrets.x}: only if the node seals itself
    openbao_wait_s: float = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _which(self) -> RestoreParams:
        if (self.backup_step is None) == (self.name is None):
            raise ValueError("give exactly one of backup_step, name")
        return self


@step_type("backup.restore")
class BackupRestore(Step[RestoreParams]):
    """Restore the target's databases, volumes and OpenBao from a verified backup."""

    reversible = False  # it replaces the target's contents; the backup itself is untouched

    @classmethod
    def check_params(cls, params: Any, runbook: Any) -> list[tuple[str, str]]:
        return bc.destination_problems("from", params.from_, runbook)

    def _folder(self) -> str:
        if self.params.name:
            return self.params.name
        assert self.params.backup_step is not None
        folder = self.ctx.facts_as(bc.BackupFacts, self.params.backup_step).folder
        if not folder:
            raise PermanentError(f"{self.ctx.step_id}: step {self.params.backup_step} has no backup recorded")
        return str(folder)

    def check(self) -> Check:
        f = self.ctx.facts
        if f.get("restored_id") and f.get("restored_folder") == self._folder():
            return Check(True, f"backup {f['restored_id']} restored at {f.get('restored_at')}")
        return Check(False, "not restored from this backup")

    def plan(self) -> Plan:
        return Plan(changes=[f"fetch and verify every artefact of {self._folder()}, then restore "
                             f"{', '.join(self.params.parts)} on the target (replacing what is there)"])

    def _credentials(self, artefact: dict[str, Any]) -> TargetParams:
        for t in bc.target_databases(self.ctx, self.params.databases):
            if (t.endpoint, t.database) == (artefact["endpoint"], artefact["database"]):
                return t
        raise PermanentError(f"{self.ctx.step_id}: no credentials for {artefact['database']} on "
                             f"{artefact['endpoint']} (no postgres.copy step targets it; give with.databases)")

    def _mysql(self, artefact: dict[str, Any]) -> MyTargetParams:
        for t in stores.mysql_targets(self.ctx, self.params.mysql):
            if (t.endpoint, t.database) == (artefact["endpoint"], artefact["database"]):
                return t
        raise PermanentError(f"{self.ctx.step_id}: no credentials for MySQL database {artefact['database']} on "
                             f"{artefact['endpoint']} (no mysql.copy step targets it; give with.mysql)")

    def _redis(self, artefact: dict[str, Any]) -> RedisTargetParams:
        for t in stores.redis_targets(self.ctx, self.params.redis):
            if t.endpoint == artefact["endpoint"]:
                return t
        raise PermanentError(f"{self.ctx.step_id}: no credentials for the Redis on {artefact['endpoint']} (no "
                             "redis.copy step targets it; give with.redis)")

    def apply(self) -> None:
        ctx, p = self.ctx, self.params
        store = bc.open_store(ctx, p.from_)
        folder = self._folder()
        doc = bc.read_manifest(store, folder)
        chosen = [a for a in doc["artefacts"] if a["kind"] in p.parts]
        stage = bc.staging(ctx, "restores", folder)
        local: dict[str, Any] = {}
        try:
            for a in chosen:  # all verified before anything is restored
                path = stage / a["key"].replace("/", "__")
                store.fetch(f"{folder}/{a['key']}", path)
                got = sha256_of(path)
                if got != a["sha256"] or path.stat().st_size != a["size"]:
                    raise PermanentError(f"backup {store.label}/{folder}: {a['key']} has sha256 {got}, the manifest "
                                         f"says {a['sha256']}: refusing to restore from it (nothing was restored)")
                local[a["key"]] = path
            ctx.record(restoring=folder, started_at=time.time())
            restored: dict[str, Any] = {}
            for a in chosen:
                path = local[a["key"]]
                if a["kind"] == "postgres":
                    restored[a["key"]] = parts.restore_postgres(ctx, self._credentials(a), path)
                elif a["kind"] == "mysql":
                    restored[a["key"]] = stores.restore_mysql(ctx, self._mysql(a), path, a)
                elif a["kind"] == "redis":
                    dbs = [int(d) for d in a.get("databases") or {}]
                    restored[a["key"]] = counts = stores.restore_redis(ctx, self._redis(a), path, dbs)
                    if counts["expired"]:
                        ctx.log.info("redis keys expired since the backup: not restored", key=a["key"],
                                     expired=counts["expired"])
                elif a["kind"] == "volume":
                    where = parts.volume_root(ctx, a["volume"])
                    restored[a["key"]] = parts.restore_volume_to(ctx, where, path, a["files"], f"volume {a['volume']}")
                elif a["kind"] == "openbao":
                    parts.restore_openbao(ctx, path, keys_of(p.openbao_unseal_keys), p.openbao_wait_s)
                    restored[a["key"]] = "restored"
                ctx.journal("backup-restored", key=a["key"], kind=a["kind"])
                ctx.failpoint("after-restore")
            ctx.record(restored=restored, restored_id=doc["id"], restored_folder=folder, restored_at=time.time(),
                       seconds=round(time.time() - float(ctx.facts["started_at"]), 3))
        finally:
            for path in local.values():
                path.unlink(missing_ok=True)

    def verify(self) -> None:
        """The volumes hold exactly the manifest's files again; each MySQL table has the row count and digest
        recorded at the backup; each Redis database its keys, each with the backup's content digest
        (fetched again, its sha256 checked). The Postgres databases: postgres.verify's job."""
        store = bc.open_store(self.ctx, self.params.from_)
        folder = self._folder()
        doc = bc.read_manifest(store, folder)
        problems: list[str] = []
        for a in doc["artefacts"]:
            if a["kind"] not in self.params.parts:
                continue
            if a["kind"] == "mysql":
                problems += stores.mysql_problems(self.ctx, self._mysql(a), a)
            elif a["kind"] == "redis":
                path = bc.staging(self.ctx, "restores", folder) / a["key"].replace("/", "__")
                try:
                    store.fetch(f"{folder}/{a['key']}", path)
                    if sha256_of(path) != a["sha256"]:
                        raise PermanentError(f"{a['key']} at {store.label}/{folder} no longer matches its sha256")
                    problems += [f"redis {a['endpoint']} {x}" for x in stores.redis_problems(self.ctx, self._redis(a), path)]
                finally:
                    path.unlink(missing_ok=True)
            if problems:
                raise PermanentError(f"after the restore: {'; '.join(problems[:5])}")
            if a["kind"] != "volume":
                continue
            got = parts.volume_files(self.ctx, parts.volume_root(self.ctx, a["volume"]))
            bad = sorted(p for p, f in a["files"].items() if p not in got or got[p].sha256 != f["sha256"])
            if bad:
                raise PermanentError(f"volume {a['volume']} after the restore: {', '.join(bad[:5])} differ")

    def rollback(self) -> None:
        raise PermanentError("a restore cannot be undone (take a backup first)")

    def report(self) -> dict[str, Any]:
        f = self.ctx.facts
        return {k: f[k] for k in ("seconds", "restored_folder") if k in f}
