"""DNS cutover: dns.lower-ttl, dns.cutover and dns.restore-ttl.

The flip is guarded three ways: it waits the OLD TTL after lower-ttl (so no resolver still caches a
long-lived answer), it sends one atomic update whose prerequisites say "still what we saw" (so a
record changed by someone else is never overwritten), and it records the exact old record sets before
sending (so rollback, even from a fresh process, puts back exactly what was there).
"""

from __future__ import annotations

import ipaddress
import re
import time
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from migrator.adapters.dns import (
    Change,
    ConflictError,
    RRSet,
    Server,
    absolute,
    key_of,
    provider_for,
    query_server,
    same,
    show,
    split_key,
)
from migrator.errors import GateNotReady, PermanentError, TemporaryError
from migrator.steps.base import Check, Facts, Plan, Step, StrictModel, step_type

if TYPE_CHECKING:
    from migrator.adapters.dns import Change, DNSProvider, RRSet, Server
    from migrator.runbook.environment import DNSConfig

RType = Literal["A", "AAAA", "CNAME"]
Target = str | list[str]
_HOSTNAME = re.compile(r"^(?=.{1,253}\.?$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.?$",
                       re.IGNORECASE)
TTLCheck = Literal["ignore", "exact", "at-most"]
CONVERGE_MAX_S = 120.0  # how long a rollback waits for every authoritative server before retrying


def _default_types() -> list[RType]:
    return ["A", "AAAA", "CNAME"]


def classify(target: Target) -> dict[str, list[str]]:
    """Target values by record type: addresses -> A/AAAA, one host name -> CNAME (absolute)."""
    values = [target] if isinstance(target, str) else list(target)
    if not values:
        raise ValueError("a target needs at least one value")
    out: dict[str, list[str]] = {}
    for value in values:
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            if not _HOSTNAME.match(value):
                raise ValueError(f"{value!r} is neither an IP address nor a host name") from None
            out.setdefault("CNAME", []).append(value if value.endswith(".") else value + ".")
            continue
        out.setdefault("A" if ip.version == 4 else "AAAA", []).append(str(ip))
    if "CNAME" in out and (len(out) > 1 or len(out["CNAME"]) > 1):
        raise ValueError("a CNAME target must be a single host name, alone (no addresses beside it)")
    return out


# -- the facts the three steps pass on -------------------------------------------------------------
# Record sets are keyed as adapters.dns.key_of(name, TYPE) makes them: "www.example.org.|A".

class OldRRSet(Facts):
    ttl: int
    rdatas: list[str]


class LowerTTLFacts(Facts):
    """What dns.lower-ttl records: dns.cutover waits out the old TTLs, dns.restore-ttl puts them back."""

    old: dict[str, OldRRSet | None] = Field(default_factory=dict)  # None: no such record set then
    ttl: int | None = None
    max_old_ttl: int | None = None
    lowered_at: float | None = None  # None until the lowered TTLs were sent (and again after rollback)


class CutoverFacts(Facts):
    """What dns.cutover records: dns.restore-ttl restores only the record sets the flip wrote."""

    written: dict[str, Any] = Field(default_factory=dict)  # RRSet.fact() of each written set, or None
    old_sets: dict[str, Any] = Field(default_factory=dict)


class RecordsParams(StrictModel):
    records: list[str] = Field(min_length=1)  # relative to the zone, or FQDN with a trailing dot
    types: list[RType] = Field(default_factory=_default_types)


class LowerTTLParams(RecordsParams):
    ttl: int = Field(default=60, ge=1, le=86400)


class CutoverParams(RecordsParams):
    target: Target | None = None  # e.g. ${environment.target.ingress_address}
    targets: dict[str, Target] = Field(default_factory=dict)  # per record, overriding `target`
    ttl: int | None = Field(default=None, ge=1, le=86400)  # default: the record's current (lowered) TTL
    ttl_wait_override_s: float | None = Field(default=None, ge=0)  # rehearsals only: shortens the TTL wait
    lower_ttl_step: str = "dns-lower-ttl"

    @field_validator("target")
    @classmethod
    def _target_ok(cls, value: Target | None) -> Target | None:
        if value is not None:
            classify(value)
        return value

    @model_validator(mode="after")
    def _every_record_has_a_target(self) -> CutoverParams:
        unknown = sorted(set(self.targets) - set(self.records))
        if unknown:
            raise ValueError(f"targets for records not listed in records: {', '.join(unknown)}")
        for name, value in self.targets.items():
            try:
                classify(value)
            except ValueError as exc:
                raise ValueError(f"targets.{name}: {exc}") from None
        missing = [r for r in self.records if r not in self.targets and self.target is None]
        if missing:
            raise ValueError(f"no target for {', '.join(missing)}: give target (all records) or targets (per record)")
        return self


class RestoreTTLParams(RecordsParams):
    lower_ttl_step: str = "dns-lower-ttl"
    cutover_step: str | None = "dns-cutover"  # only records still holding what it wrote; null: every record


P = TypeVar("P", bound=RecordsParams)


def _when(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


class _DnsStep(Step[P]):
    """What the dns steps share: the provider, names, reads, and the check on every authoritative server."""

    @property
    def env(self) -> DNSConfig:
        env = self.ctx.runbook.environment.dns
        if env is None:
            raise PermanentError(f"{self.ctx.step_id}: the runbook has no environment.dns section")
        return env

    @property
    def provider(self) -> DNSProvider:
        env = self.env
        return self.ctx.resource(f"dns:{env.zone}", lambda: provider_for(env, self.ctx.secret, self.ctx.path))  # type: ignore[no-any-return]

    def names(self) -> list[str]:
        return list(dict.fromkeys(absolute(r, self.env.zone) for r in self.params.records))

    def keys(self) -> list[str]:
        return [key_of(n, t) for n in self.names() for t in dict.fromkeys(self.params.types)]

    def observe(self, keys: list[str]) -> dict[str, RRSet | None]:
        return {k: self.provider.read(*split_key(k)) for k in keys}

    def send(self, changes: list[Change], expect_after: dict[str, RRSet | None]) -> None:
        """Apply `changes`; on a failed prerequisite say which record changed. Nothing is written then."""
        try:
            self.provider.apply(changes)
        except ConflictError:
            now = self.observe(list(expect_after))
            if all(same(now[k], v) for k, v in expect_after.items()):
                return  # an earlier try landed (its answer was lost): the effect is there, once
            diffs = [f"{c.name} {c.rtype}: expected {show(c.expect)}, found {show(now.get(c.key))}"
                     for c in changes if c.key in now
                     and not same(now[c.key], c.expect)]
            if not diffs:  # e.g. a type outside our keys appeared at the name
                diffs = [f"{n} {t}" for n, t in (split_key(k) for k in expect_after)]
            raise ConflictError(f"{self.ctx.step_id}: changed behind the migrator's back: {'; '.join(diffs)}; "
                                "nothing was overwritten") from None

    def lagging(self, expect: dict[str, RRSet | None], ttl: TTLCheck) -> list[str]:
        """One line per authoritative server that does not (yet) answer `expect`, over UDP or TCP."""
        lags = []
        for server in self.provider.authoritative_servers():
            lag = self._server_lag(server, expect, ttl, query_server, same, show, split_key)
            if lag:
                lags.append(lag)
        return lags

    def _server_lag(self, server: Server, expect: dict[str, RRSet | None], ttl: TTLCheck, query: Any, same: Any,
                    show: Any, split_key: Any) -> str | None:
        for tcp in (False, True):
            proto = "TCP" if tcp else "UDP"
            for key, want in expect.items():
                name, rtype = split_key(key)
                try:
                    got = query(server, name, rtype, tcp=tcp, timeout=self.env.timeout_s)
                except TemporaryError as exc:
                    return str(exc)
                ok = same(got, want) and (want is None or ttl == "ignore" or got is None
                                          or (got.ttl == want.ttl if ttl == "exact" else got.ttl <= want.ttl))
                if not ok:
                    return f"{server} still answers {name} {rtype} {show(got)} over {proto} (want {show(want)})"
        return None

    def wait_converged(self, expect: dict[str, RRSet | None], ttl: TTLCheck) -> None:
        """For rollbacks (no gate there): poll every authoritative server, bounded, then retry via the engine."""
        deadline = time.monotonic() + min(self.ctx.remaining(), CONVERGE_MAX_S)
        while True:
            lags = self.lagging(expect, ttl)
            if not lags:
                return
            if time.monotonic() >= deadline:
                raise TemporaryError(f"{self.ctx.step_id}: not yet on every authoritative server: {'; '.join(lags)}")
            self.ctx.sleep(0.5)


@step_type("dns.lower-ttl")
class DnsLowerTTL(_DnsStep[LowerTTLParams]):
    """Lower the TTL of the records ahead of the cutover; records the old TTL per record set and when."""

    description = "lower the TTL of the cutover's records, recording the old TTLs"

    def _current(self) -> dict[str, RRSet | None]:
        cur = self.observe(self.keys())
        missing = [n for n in self.names() if not any(cur[k] for k in cur if k.startswith(n + "|"))]
        if missing:
            raise PermanentError(f"{self.ctx.step_id}: no {'/'.join(self.params.types)} record at "
                                 f"{', '.join(missing)}: check `records` (names are relative to {self.env.zone})")
        return cur

    def check(self) -> Check:
        cur = self._current()
        high = [f"{r.name} {r.rtype} {r.ttl}s" for r in cur.values() if r and r.ttl > self.params.ttl]
        if high:
            return Check(False, f"TTL above {self.params.ttl}s: {', '.join(high)}")
        at = self.ctx.facts.get("lowered_at")
        if not at:
            return Check(False, "TTLs are low but the time they were lowered is not recorded")
        return Check(True, f"every record set has TTL <= {self.params.ttl}s since {_when(at)}")

    def plan(self) -> Plan:
        plan = Plan()
        for r in self._current().values():
            if r and r.ttl > self.params.ttl:
                plan.change(f"{r.name} {r.rtype} TTL {r.ttl}s -> {self.params.ttl}s ({' '.join(r.rdatas)})")
        return plan

    def apply(self) -> None:
        ttl = self.params.ttl
        cur = self._current()
        before: dict[str, Any] = self.ctx.facts.get("old") or {}
        old: dict[str, Any] = {}
        changes = []
        for key, r in cur.items():
            if r is None:
                old[key] = None
            elif r.ttl > ttl:
                old[key] = {"ttl": r.ttl, "rdatas": list(r.rdatas)}
                changes.append(Change(r.name, r.rtype, r, r.with_ttl(ttl)))
            else:  # already low: keep what an earlier attempt recorded, it is the real old TTL
                old[key] = {"ttl": (before.get(key) or {}).get("ttl", r.ttl), "rdatas": list(r.rdatas)}
        ttls = [v["ttl"] for v in old.values() if v]
        self.ctx.record(old=old, ttl=ttl, max_old_ttl=max(ttls), lowered_at=None)
        self.send(changes, {c.key: c.new for c in changes})
        # Recorded after the update: the TTL wait of the cutover counts from here (later is safer).
        self.ctx.record(lowered_at=time.time())

    def verify(self) -> None:
        expect = {k: v.with_ttl(self.params.ttl) if v else None for k, v in self.observe(self.keys()).items()}
        lags = self.lagging(expect, "at-most")
        if lags:
            raise GateNotReady("; ".join(lags))

    def rollback(self) -> None:
        old: dict[str, Any] = self.ctx.facts.get("old") or {}
        wanted = {k: v["ttl"] for k, v in old.items() if v}
        cur = self.observe(list(wanted))
        changes = [Change(r.name, r.rtype, r, r.with_ttl(wanted[k])) for k, r in cur.items()
                   if r is not None and r.ttl != wanted[k]]
        for k in (k for k, r in cur.items() if r is None):
            self.ctx.log.warning("record set gone; its TTL cannot be restored", record=" ".join(split_key(k)))
        self.send(changes, {c.key: c.new for c in changes})
        self.ctx.record(lowered_at=None)
        self.wait_converged({c.key: c.new for c in changes}, "exact")

    def rollback_plan(self) -> Plan:
        old: dict[str, Any] = self.ctx.facts.get("old") or {}
        return Plan(changes=[f"{k.replace('|', ' ')} TTL back to {v['ttl']}s" for k, v in old.items() if v])


SHORT_TTL_WAIT_S = 60  # a TTL wait at most this long is waited out by dns.cutover instead of refused


@step_type("dns.cutover")
class DnsCutover(_DnsStep[CutoverParams]):
    """Point the records at the new target once the old TTL has passed; verified on every authoritative server."""

    description = "flip the records to the target, guarded by prerequisites; rollback restores them exactly"

    _seen: dict[str, RRSet | None] | None = None
    _report: dict[str, Any] | None = None

    def _targets(self) -> dict[str, dict[str, list[str]]]:
        return {absolute(r, self.env.zone): classify(self.params.targets.get(r, self.params.target or []))
                for r in self.params.records}

    def desired(self, cur: dict[str, RRSet | None]) -> dict[str, RRSet | None]:
        """Every key the cutover owns: the target's record sets, and None for the other types (deleted)."""
        out: dict[str, RRSet | None] = {}
        for name, by_type in self._targets().items():
            now = [r.ttl for k, r in cur.items() if r and k.startswith(name + "|")]
            ttl = self.params.ttl or (min(now) if now else 60)
            for rtype in dict.fromkeys([*self.params.types, *by_type]):
                out[key_of(name, rtype)] = RRSet.make(name, rtype, ttl, by_type[rtype]) if rtype in by_type else None
        return out

    def ttl_wait(self) -> tuple[float, str]:
        """Seconds left before the flip may happen, and why. PermanentError if lower-ttl has not succeeded."""
        lower, step = self.params.lower_ttl_step, self.ctx.step_id
        facts, status = self.ctx.facts_as(LowerTTLFacts, lower), self.ctx.status_of(lower)
        if status != "succeeded" or not facts.lowered_at:
            raise PermanentError(f"{step}: {lower} has not succeeded (it is {status}); run it first, then wait its "
                                 "old TTL")
        old = facts.old
        names = set(self._targets())
        ttls = [v.ttl for k, v in old.items() if v and split_key(k)[0] in names]
        lowered = {split_key(k)[0] for k, v in old.items() if v}
        missing = sorted(names - lowered)
        if missing:
            raise PermanentError(f"{step}: {', '.join(missing)} not lowered by {lower}: add them to its records")
        start = max(float(facts.lowered_at), self.ctx.finished_at(lower) or 0.0)
        wait = float(max(ttls))
        why = f"old TTL {max(ttls)}s"
        if self.params.ttl_wait_override_s is not None and self.ctx.runbook.file.production:
            raise PermanentError(f"{step}: ttl_wait_override_s is for rehearsals; this runbook is production: "
                                 "remove it and let the old TTL pass")
        if self.params.ttl_wait_override_s is not None and self.params.ttl_wait_override_s < wait:
            wait = self.params.ttl_wait_override_s
            why += f", shortened to {wait:g}s by ttl_wait_override_s"
        left = start + wait - time.time()
        return left, (f"TTL wait: {max(0.0, left):.0f}s left ({why}, since {lower} lowered it at {_when(start)}; "
                      f"not before {_when(start + wait)})")

    def check(self) -> Check:
        want = self.desired({})
        self._seen = cur = self.observe(list(want))
        if all(same(cur[k], v) for k, v in want.items()):
            return Check(True, f"every record already points at the target ({len(self._targets())} records)")
        return Check(False, "not every record points at the target")

    def plan(self) -> Plan:
        cur = self._seen if self._seen is not None else self.observe(list(self.desired({})))
        want = self.desired(cur)
        plan = Plan()
        for k, new in want.items():
            if not same(cur[k], new):
                name, rtype = split_key(k)
                plan.change(f"{name} {rtype}: {show(cur[k])} -> {show(new)}")
        try:
            plan.waits.append(self.ttl_wait()[1])
        except PermanentError as exc:
            plan.waits.append(str(exc))
        plan.unknowns.append("whether someone changes a record before the update (a prerequisite then stops it)")
        return plan

    def _changed_since_lower(self, cur: dict[str, RRSet | None]) -> list[str]:
        old = self.ctx.facts_as(LowerTTLFacts, self.params.lower_ttl_step).old
        out = []
        for k, v in old.items():
            if k in cur:
                seen = RRSet.make(*split_key(k), v.ttl, v.rdatas) if v else None
                if not same(seen, cur[k]):
                    was = " ".join(seen.rdatas) if seen else "(absent)"
                    out.append(f"{k.replace('|', ' ')}: was {was} at lower-ttl, now {show(cur[k])}")
        return out

    def apply(self) -> None:
        left, why = self.ttl_wait()  # no --yes, no approval: a resolver's cache does not negotiate
        if 0 < left <= min(SHORT_TTL_WAIT_S, self.ctx.remaining()):
            # A few seconds (a rehearsal, or a resume right after lower-ttl): wait them out, still flipping
            # only once the old TTL has passed; a long wait is the operator's to schedule.
            self.ctx.log.info("waiting for the old TTL to pass", seconds=round(left, 1))
            self.ctx.sleep(left + 0.05)
            left, why = self.ttl_wait()
        if left > 0:
            raise PermanentError(f"{self.ctx.step_id}: refusing to flip before the old TTL has passed: {why}")
        cur = self._seen if self._seen is not None else self.observe(list(self.desired({})))
        self._seen = None  # the prerequisites below hold the update to what check() saw
        want = self.desired(cur)
        drift = self._changed_since_lower(cur)
        if drift:
            raise PermanentError(f"{self.ctx.step_id}: changed behind the migrator's back since "
                                 f"{self.params.lower_ttl_step}: {'; '.join(drift)}; nothing was overwritten. Find out "
                                 f"who changed it, then roll back and run {self.params.lower_ttl_step} again")
        changes = [Change(*split_key(k), cur[k], cur[k] if same(cur[k], new) else new) for k, new in want.items()]
        ours = [c for c in changes if c.writes]
        old_sets = {c.key: c.expect.to_fact() if c.expect else None for c in ours}
        written = {c.key: c.new.to_fact() if c.new else None for c in ours}
        prev_written: dict[str, Any] = self.ctx.facts.get("written") or {}
        for k, v in (self.ctx.facts.get("old_sets") or {}).items():  # a partial earlier flip stays ours to undo
            if k not in old_sets and k in cur and prev_written.get(k) and same(cur[k], RRSet.from_fact(prev_written[k])):
                old_sets[k], written[k] = v, prev_written[k]
        # Recorded BEFORE the update: a crash right after it still leaves rollback what it needs.
        self.ctx.record(old_sets=old_sets, written=written, recorded_at=time.time(), updated_at=None, conflict=None)
        self.ctx.failpoint("before-update")
        try:
            self.send(changes, want)
        except PermanentError as exc:
            self.ctx.record(old_sets={}, written={}, conflict=str(exc))  # nothing was written: nothing to undo
            raise
        self.ctx.failpoint("after-update")
        self.ctx.record(updated_at=time.time())
        self.ctx.log.info("records flipped", records=sorted(written))

    def verify(self) -> None:
        want = self.desired({})
        lags = self.lagging(want, "ignore")
        if lags:  # logged at each try: the engine shows the gate's reason only at its deadline
            self.ctx.log.info("not yet on every authoritative server", lagging=lags)
            raise GateNotReady("; ".join(lags))
        self._report = {"records": len(self._targets()),
                        "authoritative_servers": [str(s) for s in self.provider.authoritative_servers()],
                        "resolvers_still_caching": self._resolvers(want)}

    def _resolvers(self, want: dict[str, RRSet | None]) -> dict[str, str]:
        """What the configured resolvers still answer (reported, never a failure: caches expire on their own)."""
        stale: dict[str, str] = {}
        for i, hp in enumerate(self.env.resolvers):
            server = Server(f"resolver{i + 1}", hp.host, hp.port)
            for k, v in want.items():
                try:
                    got = query_server(server, *split_key(k), tcp=False, timeout=self.env.timeout_s, recursive=True)
                except (TemporaryError, PermanentError) as exc:
                    stale[f"{server} {k.replace('|', ' ')}"] = f"no answer: {exc}"
                    continue
                if not same(got, v):
                    stale[f"{server} {k.replace('|', ' ')}"] = show(got)
        for where, what in stale.items():
            self.ctx.log.warning("resolver still has the old answer", where=where, answer=what)
        return stale

    def report(self) -> dict[str, Any]:
        facts = self.ctx.facts
        out = dict(self._report or {})
        out["records_changed"] = sorted(facts.get("written") or {})
        if facts.get("updated_at") and facts.get("recorded_at"):
            out["flipped_at"] = facts["updated_at"]
        return out

    # -- rollback --------------------------------------------------------------------------------
    def _rollback_changes(self) -> tuple[list[Change], dict[str, RRSet | None], list[str]]:
        facts = self.ctx.facts
        old_sets: dict[str, Any] = facts.get("old_sets") or {}
        written: dict[str, Any] = facts.get("written") or {}
        cur = self.observe(list(old_sets))
        changes, refused = [], []
        expect: dict[str, RRSet | None] = {}
        for k, o in old_sets.items():
            old = RRSet.from_fact(o) if o else None
            wrote = RRSet.from_fact(written[k]) if written.get(k) else None
            expect[k] = old
            now = cur[k]
            if now == old:
                continue  # already back (a rollback that crashed after its update)
            if same(now, wrote) or same(now, old):
                changes.append(Change(*split_key(k), now, old))  # prerequisite: still what the cutover wrote
            else:
                refused.append(f"{k.replace('|', ' ')} is now {show(now)}, not what {self.ctx.step_id} wrote "
                               f"({show(wrote)})")
        return changes, expect, refused

    def rollback(self) -> None:
        changes, expect, refused = self._rollback_changes()
        if refused:
            raise PermanentError(f"{self.ctx.step_id}: refusing to roll back: {'; '.join(refused)}; nothing was "
                                 "changed. Put the records right by hand, or `migrate stamp` once they are")
        if not expect:
            self.ctx.log.info("nothing recorded to roll back")
            return
        self.send(changes, expect)
        self.ctx.failpoint("after-update")
        self.wait_converged(expect, "exact")

    def rollback_plan(self) -> Plan:
        changes, expect, refused = self._rollback_changes()
        plan = Plan(changes=[f"{c.name} {c.rtype}: {show(c.expect)} -> {show(c.new)}" for c in changes])
        plan.unknowns += [f"would refuse: {r}" for r in refused]
        if not expect:
            plan.changes.append("nothing recorded: nothing to undo")
        return plan


@step_type("dns.restore-ttl")
class DnsRestoreTTL(_DnsStep[RestoreTTLParams]):
    """After the watch period: raise the TTL back to what lower-ttl recorded, on the records now on the target."""

    description = "restore the recorded TTLs on the flipped records"

    def _targets(self) -> tuple[dict[str, tuple[RRSet, int]], list[str]]:
        lower = self.ctx.facts_as(LowerTTLFacts, self.params.lower_ttl_step)
        old = lower.old
        if not old:
            raise PermanentError(f"{self.ctx.step_id}: {self.params.lower_ttl_step} recorded no TTLs; nothing to restore")
        written: dict[str, Any] = {}
        if self.params.cutover_step:
            if self.ctx.status_of(self.params.cutover_step) != "succeeded":
                raise PermanentError(f"{self.ctx.step_id}: {self.params.cutover_step} has not succeeded; to undo the "
                                     f"lowering, roll back {self.params.lower_ttl_step} instead")
            written = self.ctx.facts_as(CutoverFacts, self.params.cutover_step).written
        out: dict[str, tuple[RRSet, int]] = {}
        skipped = []
        for k, r in self.observe(self.keys()).items():
            if r is None:
                continue
            name = split_key(k)[0]
            ttls = [v.ttl for kk, v in old.items() if v and split_key(kk)[0] == name]
            was = old.get(k)
            ttl = (was.ttl if was else None) or (max(ttls) if ttls else lower.max_old_ttl)
            seen = RRSet.make(*split_key(k), 0, was.rdatas) if was else None
            wrote = RRSet.from_fact(written[k]) if written.get(k) else None
            ours = not self.params.cutover_step or same(r, wrote) or (k not in written and same(r, seen))
            if ours and ttl:
                out[k] = (r, int(ttl))
            else:
                skipped.append(f"{k.replace('|', ' ')} ({' '.join(r.rdatas)}: not what the cutover wrote)")
        return out, skipped

    def check(self) -> Check:
        todo, _ = self._targets()
        off = [f"{r.name} {r.rtype} {r.ttl}s" for r, ttl in todo.values() if r.ttl != ttl]
        return Check(not off, f"TTL not restored yet: {', '.join(off)}" if off else "every TTL restored")

    def plan(self) -> Plan:
        todo, skipped = self._targets()
        plan = Plan(changes=[f"{r.name} {r.rtype} TTL {r.ttl}s -> {ttl}s" for r, ttl in todo.values() if r.ttl != ttl])
        plan.unknowns += [f"left alone: {s}" for s in skipped]
        return plan

    def apply(self) -> None:
        todo, skipped = self._targets()
        for s in skipped:
            self.ctx.log.warning("TTL left alone", record=s)
        before: dict[str, Any] = self.ctx.facts.get("previous") or {}
        previous = {k: (before[k] if k in before and r.ttl == ttl else r.to_fact()) for k, (r, ttl) in todo.items()}
        self.ctx.record(previous=previous, skipped=skipped)
        changes = [Change(r.name, r.rtype, r, r.with_ttl(ttl)) for r, ttl in todo.values() if r.ttl != ttl]
        self.send(changes, {c.key: c.new for c in changes})

    def verify(self) -> None:
        todo, _ = self._targets()
        lags = self.lagging({k: r.with_ttl(ttl) for k, (r, ttl) in todo.items()}, "exact")
        if lags:
            raise GateNotReady("; ".join(lags))

    def rollback(self) -> None:
        previous: dict[str, Any] = self.ctx.facts.get("previous") or {}
        wanted = {k: RRSet.from_fact(v) for k, v in previous.items()}
        changes = []
        for k, now in self.observe(list(wanted)).items():
            if now is not None and same(now, wanted[k]) and now.ttl != wanted[k].ttl:
                changes.append(Change(now.name, now.rtype, now, wanted[k]))
            elif not same(now, wanted[k]):
                self.ctx.log.warning("record changed since restore-ttl; TTL left alone", record=k)
        self.send(changes, {c.key: c.new for c in changes})
        self.wait_converged({c.key: c.new for c in changes}, "exact")
