"""backup.create: the target as the migration built it, kept before DNS moves, with a manifest of checksums.

Every target database (pg_dump custom format; the targets of the runbook's postgres.copy and
postgres.replicate steps unless `databases` names them), the target OpenBao's raft snapshot (when the
runbook has environment.openbao), and every volume target (the volume.copy steps' targets: their claims,
or the directories environment.target.volume_paths names) as a tar with the sha256
of each file (a claim's tar is made in a helper pod on it, through pods/exec), every MySQL database the
runbook's mysql.copy steps fill (a dump through the target endpoint, with each table's row digest) and
every Redis they redis.copy into (each key's DUMP payload and expiry: see backup_stores). Each artefact is made under the
state dir (0700), its sha256 computed, put at the destination (`to: {dir}` or `to: {s3}`), then removed
locally; `backup.json`, written last, lists them all (size, sha256, seconds).

Resumable: the backup's folder and what was put are recorded before and after each put; after a crash
the artefacts already at the destination with their recorded size and sha256 are skipped, an artefact
made but not yet put (its sha256 recorded) is not made again, and a multipart upload to S3 continues from
the parts S3 holds (its id recorded; see adapters/s3multipart). check() is done when this step's
backup.json is there and every artefact in it still matches.

Rollback KEEPS the backup (`on_rollback: keep`, the default): it is the copy an operator reaches for
when the rollback was the wrong call, so it is never deleted as a side effect; the journal's
`backup-kept` event names its location and folder (the step's facts are cleared by the engine, so the
next run makes a new folder). Unfinished multipart uploads are aborted either way (they are no object,
only billed parts). `on_rollback: delete` deletes what this step wrote, and only that.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import model_validator

from migrator.errors import PermanentError
from migrator.steps import backup_common as bc
from migrator.steps import backup_parts as parts
from migrator.steps import backup_stores as stores
from migrator.steps.backup_velero import Velero, VeleroParams
from migrator.steps.base import Check, Plan, Step, StepContext, StrictModel, step_type
from migrator.steps.mysql import MyTargetParams
from migrator.steps.postgres.pg_common import TargetParams
from migrator.steps.redis import RedisTargetParams
from migrator.steps.volume_claim import Claim
from migrator.steps.volume_manifest import sha256_of

if TYPE_CHECKING:
    from migrator.adapters.objectstore import Store
    from migrator.runbook.model import RunbookFile


class CreateParams(StrictModel):
    # files (default): the artefacts below, to `to`; velero: a Velero Backup of `velero.included_namespaces`.
    backend: Literal["files", "velero"] = "files"
    to: bc.Destination | None = None
    velero: VeleroParams | None = None
    # Default: the target of every postgres.copy step of the runbook.
    databases: list[TargetParams] | None = None
    # Volume targets (claims filled by volume.copy steps, or keys of environment.target.volume_paths);
    # default: the target of every volume.copy step.
    volumes: list[str] | None = None
    # Default: the target of every mysql.copy step (endpoint, database), and of every redis.copy step
    # (endpoint: every database holding keys); [] leaves them out.
    mysql: list[MyTargetParams] | None = None
    redis: list[RedisTargetParams] | None = None
    openbao: bool = True  # the target OpenBao's raft snapshot, when the runbook has environment.openbao
    # What a rollback does with the backup: keep it (journalled: where it is), or delete what this step wrote.
    on_rollback: Literal["keep", "delete"] = "keep"

    @model_validator(mode="after")
    def _backend(self) -> CreateParams:
        if self.backend == "files" and (self.to is None or self.velero is not None):
            raise ValueError("backend files needs `to` (dir or s3), and no `velero`")
        if self.backend == "velero" and (self.velero is None or self.to is not None):
            raise ValueError("backend velero needs `velero` (namespace, included_namespaces...), and no `to`")
        return self


class _Artefact:
    def __init__(self, key: str, kind: str, make: Callable[[Path], dict[str, Any] | None], **meta: Any) -> None:
        self.key, self.kind, self.make, self.meta = key, kind, make, meta


class _Uploads:
    """The multipart upload ids, kept in the step's facts (`uploads`: key -> id and the file's sha256) so
    that a resumed run continues the upload; `after-part` is a failpoint (a kill mid-upload, in tests)."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx

    def get(self, key: str, sha256: str) -> str | None:
        u = (self.ctx.facts.get("uploads") or {}).get(key)
        return str(u["id"]) if u and u.get("sha256") == sha256 else None

    def started(self, key: str, sha256: str, upload_id: str) -> None:
        self.ctx.record(uploads={**(self.ctx.facts.get("uploads") or {}), key: {"id": upload_id, "sha256": sha256}})

    def part_done(self, number: int) -> None:
        self.ctx.failpoint("after-part")

    def finished(self, key: str) -> None:
        left = dict(self.ctx.facts.get("uploads") or {})
        if left.pop(key, None) is not None:
            self.ctx.record(uploads=left)


def _dump(ctx: StepContext, t: TargetParams, out: Path) -> dict[str, Any] | None:
    parts.dump_postgres(ctx, t, out)
    return None


def _tar(ctx: StepContext, where: Path | Claim, out: Path) -> dict[str, Any] | None:
    return {"files": parts.backup_volume(ctx, where, out)}


@step_type("backup.create")
class BackupCreate(Step[CreateParams]):
    """Back up the target (databases, MySQL, Redis, OpenBao snapshot, volumes) to a directory or an S3 bucket."""

    @classmethod
    def check_params(cls, params: Any, runbook: RunbookFile) -> list[tuple[str, str]]:
        if params.to is None:
            return []
        # A name that volume_paths does not have is a claim: checked when the step runs (its volume.copy step)
        return bc.destination_problems("to", params.to, runbook)

    # -- what ----------------------------------------------------------------------------------------
    def _volumes(self) -> list[str]:
        if self.params.volumes is not None:
            return list(self.params.volumes)
        found = {str(s.params_raw.get("target")) for s in self.ctx.runbook.steps if s.spec.uses == "volume.copy"}
        return sorted(found)

    def _artefacts(self) -> list[_Artefact]:
        out: list[_Artefact] = []
        for t in bc.target_databases(self.ctx, self.params.databases):
            out.append(_Artefact(parts.pg_key(t), "postgres", partial(_dump, self.ctx, t),
                                 endpoint=t.endpoint, database=t.database, user=t.user))
        for m in stores.mysql_targets(self.ctx, self.params.mysql):
            out.append(_Artefact(stores.mysql_key(m), "mysql", partial(stores.dump_mysql, self.ctx, m),
                                 endpoint=m.endpoint, database=m.database, user=m.user))
        for r in stores.redis_targets(self.ctx, self.params.redis):
            out.append(_Artefact(stores.redis_key(r), "redis", partial(stores.dump_redis, self.ctx, r),
                                 endpoint=r.endpoint))
        if self.params.openbao and parts.has_openbao(self.ctx):
            out.append(_Artefact(parts.OPENBAO_KEY, "openbao", lambda p: parts.snapshot_openbao(self.ctx, p)))
        for name in self._volumes():
            where = parts.volume_root(self.ctx, name)
            out.append(_Artefact(parts.volume_key(name), "volume", partial(_tar, self.ctx, where), volume=name))
        return out

    def _store(self) -> Store:
        assert self.params.to is not None
        return bc.open_store(self.ctx, self.params.to)

    def _velero(self) -> Velero | None:
        p = self.params
        return Velero(self.ctx, p.velero) if p.backend == "velero" and p.velero is not None else None

    def _folder(self) -> str:
        folder = self.ctx.facts.get("folder")
        if not folder:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            folder = f"{self.ctx.runbook.name}-{self.ctx.step_id}-{stamp}-{uuid.uuid4().hex[:6]}"
        return str(folder)

    # -- the contract ------------------------------------------------------------------------------------
    def check(self) -> Check:
        if (v := self._velero()) is not None:
            return v.check()
        f = self.ctx.facts
        if not f.get("completed_at"):
            return Check(False, "no complete backup recorded" + (" (resuming one)" if f.get("folder") else ""))
        store = self._store()
        try:
            doc = bc.read_manifest(store, f["folder"])
        except PermanentError as exc:
            return Check(False, str(exc))
        if doc.get("id") != f.get("backup_id"):
            return Check(False, f"{store.label}/{f['folder']}/{bc.MANIFEST} belongs to another backup")
        bad = bc.problems_at(store, f["folder"], doc["artefacts"], deep=True)
        if bad:
            return Check(False, f"the backup at {store.label} no longer verifies: {bad[0]}")
        return Check(True, f"{len(doc['artefacts'])} artefacts at {store.label}/{f['folder']} verify")

    def plan(self) -> Plan:
        if (v := self._velero()) is not None:
            return v.plan()
        store = self._store()
        plan = Plan()
        try:
            artefacts = self._artefacts()
        except PermanentError as exc:
            return Plan(unknowns=[f"the run will stop here: {exc}"])
        for a in artefacts:
            plan.change(f"{a.kind}: {a.key} -> {store.label}/{self._folder()}/")
        plan.change(f"{bc.MANIFEST} (sizes, sha256) written last")
        return plan

    def apply(self) -> None:
        if (v := self._velero()) is not None:
            v.apply()
            return
        ctx = self.ctx
        store = self._store()
        folder = self._folder()
        if not ctx.facts.get("backup_id"):
            ctx.record(backup_id=uuid.uuid4().hex, folder=folder, location=store.label, started_at=time.time(),
                       written=[], done={})
        f = ctx.facts
        done: dict[str, dict[str, Any]] = dict(f.get("done") or {})
        written: list[str] = list(f.get("written") or [])
        stage = bc.staging(ctx, "backups", folder)
        artefacts = self._artefacts()
        uploads = _Uploads(ctx)
        bar = ctx.progress(f"backup to {store.label}", total=len(artefacts))
        for a in artefacts:
            key = f"{folder}/{a.key}"
            prior = done.get(a.key)
            st = store.stat(key) if prior else None
            # sha256_of: a directory's file is hashed again; an S3 object's recorded (signed) sha256 is read.
            if (prior and st is not None and st.size == prior["size"]
                    and store.sha256_of(key) == st.sha256 == prior["sha256"]):
                ctx.journal("backup-artefact-skipped", key=a.key, reason="already at the destination, checksum matches")
                bar.advance()
                continue
            started = time.monotonic()
            local = stage / a.key.replace("/", "__")
            made = self._staged(a.key, local)
            if made is None:
                local.unlink(missing_ok=True)
                extra = a.make(local) or {}
                digest, size = sha256_of(local), local.stat().st_size
                # Recorded before the put: a run killed mid-upload puts this same file (and continues a
                # multipart upload) instead of making the artefact again.
                ctx.record(staged={**(f.get("staged") or {}), a.key: {"sha256": digest, "size": size, "extra": extra}})
            else:
                digest, size, extra = made
                ctx.journal("backup-artefact-staged", key=a.key, reason="made before the interruption, checksum matches")
            if key not in written:
                written.append(key)
                ctx.record(written=written)  # before the put: rollback removes it even if we die mid-put
            store.put(key, local, digest, uploads)
            uploads.finished(key)
            local.unlink(missing_ok=True)
            done[a.key] = {"key": a.key, "kind": a.kind, "size": size, "sha256": digest,
                           "seconds": round(time.monotonic() - started, 3), **a.meta, **extra}
            # A volume's file list is kept too: a resume that skips its tar still writes it into the manifest.
            staged = dict(f.get("staged") or {})
            staged.pop(a.key, None)
            ctx.record(done=done, staged=staged)
            ctx.journal("backup-artefact", key=a.key, kind=a.kind, bytes=size, sha256=digest,
                        seconds=done[a.key]["seconds"])
            bar.advance()
            ctx.failpoint("after-artefact")
        self._write_manifest(store, folder, artefacts, done, written)

    def _staged(self, name: str, local: Path) -> tuple[str, int, dict[str, Any]] | None:
        """(sha256, size, extra) of an artefact made before an interruption and still intact here, or None."""
        rec = (self.ctx.facts.get("staged") or {}).get(name)
        if not rec or not local.is_file() or local.stat().st_size != rec["size"] or sha256_of(local) != rec["sha256"]:
            return None
        return str(rec["sha256"]), int(rec["size"]), dict(rec.get("extra") or {})

    def _write_manifest(self, store: Store, folder: str, artefacts: list[_Artefact],
                        done: dict[str, dict[str, Any]], written: list[str]) -> None:
        ctx, f = self.ctx, self.ctx.facts
        listed = [done[a.key] for a in artefacts]
        total = sum(int(a["size"]) for a in listed)
        seconds = round(sum(float(a["seconds"]) for a in listed), 3)
        now = time.time()
        doc = {"format": bc.FORMAT, "id": f["backup_id"], "runbook": ctx.runbook.name, "step": ctx.step_id,
               "started_at": f["started_at"], "completed_at": now,
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
               "bytes": total, "seconds": seconds, "artefacts": listed}
        data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        key = f"{folder}/{bc.MANIFEST}"
        if key not in written:
            written.append(key)
            ctx.record(written=written)
        store.put_bytes(key, data, bc.sha256_bytes(data))
        ctx.record(completed_at=now, bytes=total, seconds=seconds, artefacts=len(listed),
                   wall_seconds=round(now - float(f["started_at"]), 3))
        ctx.journal("backup-complete", location=f"{store.label}/{folder}", artefacts=len(listed), bytes=total,
                    seconds=seconds)

    def verify(self) -> None:
        if (v := self._velero()) is not None:
            v.verify()
            return
        f = self.ctx.facts
        store = self._store()
        doc = bc.read_manifest(store, f["folder"])
        bad = bc.problems_at(store, f["folder"], doc["artefacts"], deep=True)
        if bad:
            raise PermanentError(f"backup at {store.label}/{f['folder']}: " + "; ".join(bad[:5]))

    def rollback_plan(self) -> Plan:
        if (v := self._velero()) is not None:
            return v.rollback_plan()
        f = self.ctx.facts
        written = f.get("written") or []
        if self.params.on_rollback == "keep":
            return Plan(changes=[f"keep the backup {f.get('location')}/{f.get('folder')} ({len(written)} objects; "
                                 "on_rollback: keep), abort its unfinished uploads"] if written else [])
        return Plan(changes=[f"delete {k} at {f.get('location')}" for k in written])

    def rollback(self) -> None:
        if (v := self._velero()) is not None:
            v.rollback()
            return
        f = self.ctx.facts
        written = list(f.get("written") or [])
        if not written:
            return
        store = self._store()
        for key in written:  # not objects yet, only parts: nothing worth keeping
            store.abort_uploads(key)
        if self.params.on_rollback == "keep":
            self.ctx.journal("backup-kept", location=f.get("location"), folder=f.get("folder"),
                             objects=len(written), complete=bool(f.get("completed_at")),
                             reason="on_rollback: keep (delete it yourself, or set on_rollback: delete)")
            return
        for key in reversed(written):
            store.delete(key)
        self.ctx.record(written=[], done={}, completed_at=None, backup_id=None, folder=None,
                        deleted=len(written))

    def report(self) -> dict[str, Any]:
        if (v := self._velero()) is not None:
            return v.report()
        f = self.ctx.facts
        return {k: f[k] for k in ("bytes", "seconds", "wall_seconds", "artefacts", "location", "folder") if k in f}
