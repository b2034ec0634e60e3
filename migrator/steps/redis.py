"""redis.copy / redis.verify: a Redis (RentGuy's) into its StatefulSet's server, keys with their TTLs.

A live copy: SCAN the source, DUMP + PTTL each key, RESTORE ... REPLACE on the target with what was left
of its TTL, batch by batch in pipelines. Running it again (after a crash, or as the final sync after the
writers' freeze) is harmless: every key is replaced, and `delete_extra` removes the target's keys that
the source no longer has. The source listens only inside its container network: it is reached through an
SSH tunnel to the container's address, as seen from the VPS (no port is opened on the VPS).

redis.verify compares, per database: the key count per type, and each key's content read through its
type's own commands (so the encoding either side chose does not matter), digested; and each key's TTL
(present on both sides or on neither; never longer on the target).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from migrator.adapters import resources
from migrator.adapters.redis import RedisConn, client, compare, copy_keys, keyspace, scan, summarize
from migrator.errors import GateNotReady, PermanentError
from migrator.steps.base import Check, Plan, ReadOnlyStep, Step, StrictModel, step_type
from migrator.steps.postgres.pg_common import container_of, endpoint_address, ssh_session

if TYPE_CHECKING:
    from migrator.adapters.redis import RedisConn
    from migrator.steps.base import StepContext

REDIS_PORT = 6379


class RedisSourceParams(StrictModel):
    container: str | None = None  # compose service or container name on the VPS (reached by an SSH tunnel)
    endpoint: str | None = None
    host: str | None = None
    port: int = Field(default=REDIS_PORT, ge=1, le=65535)
    password: str | None = None  # ${secrets.NAME}: sent with AUTH only
    username: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> RedisSourceParams:
        if len([k for k in ("container", "endpoint", "host") if getattr(self, k)]) != 1:
            raise ValueError("give exactly one of container, endpoint, host")
        return self


class RedisTargetParams(StrictModel):
    endpoint: str
    password: str | None = None
    username: str | None = None


class RedisParams(StrictModel):
    source: RedisSourceParams
    target: RedisTargetParams
    databases: list[int] | None = None  # default: every database holding keys on the source


class RedisCopyParams(RedisParams):
    batch: int = Field(default=500, ge=1, le=100000)
    # Remove target keys the source does not have (the final sync: keys deleted on the VPS since).
    delete_extra: bool = False
    # A target database that holds keys before the first copy: refuse (default) or merge into it.
    existing: str = Field(default="refuse", pattern="^(refuse|merge)$")


def source_conn(ctx: StepContext, s: RedisSourceParams) -> RedisConn:
    if s.container:
        c = container_of(ctx, s.container)
        nets = c.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
        addrs = [n.get("IPAddress") for n in nets.values() if n.get("IPAddress")]
        if not addrs:
            raise PermanentError(f"{ctx.step_id}: container {s.container} has no network address")

        lhost, lport = resources.ssh_tunnel(ctx.resource, ssh_session(ctx), str(addrs[0]), s.port)
        return RedisConn(lhost, lport, s.password, s.username)
    host, port = endpoint_address(ctx, s.endpoint, REDIS_PORT) if s.endpoint else (str(s.host), s.port)
    return RedisConn(host, port, s.password, s.username)


def target_conn(ctx: StepContext, t: RedisTargetParams) -> RedisConn:
    host, port = endpoint_address(ctx, t.endpoint, REDIS_PORT)
    return RedisConn(host, port, t.password, t.username)


def _databases(src: Any, wanted: list[int] | None) -> list[int]:
    return sorted(wanted) if wanted is not None else sorted(keyspace(src))


@step_type("redis.copy")
class RedisCopy(Step[RedisCopyParams]):
    """Every key of a Redis with its TTL (DUMP/RESTORE REPLACE), live; safe to run again."""

    def check(self) -> Check:
        f = self.ctx.facts
        if f.get("complete"):
            return Check(True, f"{f.get('keys')} keys copied at {time.ctime(f['complete'])}")
        return Check(False, "not copied yet" if not f.get("started") else "an earlier copy did not finish: again")

    def plan(self) -> Plan:
        p = self.params
        src_conn, dst_conn = source_conn(self.ctx, p.source), target_conn(self.ctx, p.target)
        space = keyspace(client(src_conn))
        have = keyspace(client(dst_conn))
        plan = Plan()
        for db in _databases(client(src_conn), p.databases):
            plan.change(f"db {db}: {space.get(db, 0)} keys from {p.source.container or src_conn.label()} into "
                        f"{dst_conn.label()} (DUMP/RESTORE REPLACE, with their TTLs)")
            if have.get(db) and not self.ctx.facts.get("started") and p.existing == "refuse":
                plan.change(f"REFUSED: target db {db} already holds {have[db]} keys (existing: merge to allow)")
        if p.delete_extra:
            plan.change("keys on the target that the source does not have are deleted")
        plan.unknowns.append("keys written on the source during the copy may or may not be in it (a live copy)")
        return plan

    def apply(self) -> None:
        p, ctx = self.params, self.ctx
        started = time.monotonic()
        src_conn, dst_conn = source_conn(ctx, p.source), target_conn(ctx, p.target)
        dbs = _databases(client(src_conn), p.databases)
        if not ctx.facts.get("started"):
            have = keyspace(client(dst_conn))
            busy = {db: n for db, n in have.items() if db in dbs and n}
            if busy and p.existing == "refuse":
                raise PermanentError(f"{ctx.step_id}: the target {dst_conn.label()} already holds keys ("
                                     + ", ".join(f"db {d}: {n}" for d, n in busy.items())
                                     + "); empty it, or set existing: merge")
            ctx.record(started=True, target_was_empty=not busy, databases=dbs, complete=None)
        keys = with_ttl = size = deleted = 0
        per_db: dict[str, int] = {}
        for db in dbs:
            src, dst = client(src_conn, db), client(dst_conn, db)
            n = 0
            for batch in scan(src, p.batch):
                c, t, b = copy_keys(src, dst, batch)
                n, with_ttl, size = n + c, with_ttl + t, size + b
                ctx.failpoint("after-batch")
            if p.delete_extra:
                deleted += self._delete_extra(src, dst, p.batch)
            per_db[str(db)] = n
            keys += n
        ctx.record(complete=time.time(), keys=keys, with_ttl=with_ttl, bytes=size, deleted=deleted, per_db=per_db,
                   seconds=round(time.monotonic() - started, 3))

    @staticmethod
    def _delete_extra(src: Any, dst: Any, batch: int) -> int:
        gone = 0
        for keys in scan(dst, batch):
            pipe = src.pipeline(transaction=False)
            for k in keys:
                pipe.exists(k)
            extra = [k for k, e in zip(keys, pipe.execute(), strict=True) if not e]
            if extra:
                gone += int(dst.delete(*extra))
        return gone

    def verify(self) -> None:
        """A cheap gate: as many keys on the target as the copy moved (redis.verify compares content)."""
        f = self.ctx.facts
        have = keyspace(client(target_conn(self.ctx, self.params.target)))
        for db, n in (f.get("per_db") or {}).items():
            if have.get(int(db), 0) < n - int(f.get("with_ttl") or 0):  # keys with a TTL may have expired since
                raise GateNotReady(f"target db {db}: {have.get(int(db), 0)} keys, {n} copied")

    def rollback(self) -> None:
        f = self.ctx.facts
        if not f.get("started"):
            return
        if not f.get("target_was_empty"):
            # A merge into keys that were there before (the final sync over phase 3's copy): the keys it
            # replaced came from the same source, so they are left as they are.
            self.ctx.log.warning("the target held keys before this copy: nothing removed")
            self.ctx.record(started=False, complete=None)
            return
        for db in f.get("databases") or []:
            client(target_conn(self.ctx, self.params.target), int(db)).flushdb()
        self.ctx.record(started=False, complete=None)

    def rollback_plan(self) -> Plan:
        f = self.ctx.facts
        if not f.get("started"):
            return Plan(changes=["nothing: the target was never written"])
        if not f.get("target_was_empty"):
            return Plan(changes=["nothing: the target held keys before this copy (a merge over an earlier copy of "
                                 "the same source); they are left as they are"])
        return Plan(changes=[f"FLUSHDB on the target's db {', '.join(str(d) for d in f.get('databases') or [])} "
                             "(empty before the copy)"])

    def report(self) -> dict[str, Any]:
        f = self.ctx.facts
        return {"kind": "redis", "keys": f.get("keys"), "with_ttl": f.get("with_ttl"), "bytes": f.get("bytes"),
                "deleted": f.get("deleted"), "seconds": f.get("seconds")}


@step_type("redis.verify")
class RedisVerify(ReadOnlyStep[RedisParams]):
    """Parity of a Redis: keys per type, a digest of every key's content, TTLs, per database."""

    _figures: dict[str, Any] | None = None

    def verify(self) -> None:
        p = self.params
        src_conn, dst_conn = source_conn(self.ctx, p.source), target_conn(self.ctx, p.target)
        problems: list[str] = []
        figures: dict[str, Any] = {}
        for db in _databases(client(src_conn), p.databases):
            s, d = summarize(client(src_conn, db)), summarize(client(dst_conn, db))
            problems += [f"db {db}: {x}" for x in compare(s, d)]
            figures[f"db{db}"] = {"by_type": s.by_type, "with_ttl": s.with_ttl, "digest": s.digest[:16]}
        if problems:
            raise GateNotReady("; ".join(problems))
        self._figures = figures
        self.ctx.journal("redis parity", **figures)

    def report(self) -> dict[str, Any]:
        return dict(self._figures or {})
