"""keycloak.migrate and keycloak.verify: Keycloak on its new hostname, proven by OIDC discovery and counts.

keycloak.migrate moves no data: Keycloak is frozen by a compose.freeze step and its database copied by a
postgres.copy step, both named in params and required in `needs`. It records the source's counts and
issuers (before the hostname changes), then sets the target's hostname through a small setter:
`env-file` (a KEY=value file plus an optional restart argv: the sandbox stand-in, Compose-style) or
`configmap` (a merge patch of the ConfigMap holding KC_HOSTNAME, then a rollout restart of the Deployment,
through the kube adapter). Its gate, like keycloak.verify's, checks issuers, counts and a token.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field

from migrator.adapters import resources
from migrator.adapters.keycloak import KeycloakClient, compare_counts
from migrator.adapters.kube import Ref
from migrator.errors import GateNotReady, PermanentError
from migrator.runbook.envfile import read_env_file
from migrator.steps.base import Check, Facts, Plan, ReadOnlyStep, Step, StepContext, StrictModel, step_type
from migrator.store.atomic import write_atomic

if TYPE_CHECKING:
    from migrator.adapters.keycloak import KeycloakClient
    from migrator.runbook.environment import KeycloakConfig, KeycloakEndpoint


class EnvFileHostname(StrictModel):
    via: Literal["env-file"]
    path: str  # the env file the target Keycloak reads at start
    key: str = "KC_HOSTNAME"
    restart: list[str] | None = None  # argv run after a change (no shell), e.g. compose up -d keycloak


class ConfigMapHostname(StrictModel):
    via: Literal["configmap"]
    namespace: str = "keycloak"
    name: str = "keycloak-env"
    key: str = "KC_HOSTNAME"
    restart_deployment: str | None = "keycloak"  # rollout restart so the pods read the new value


class SmokeClient(StrictModel):
    realm: str
    client_id: str
    client_secret: str  # ${secrets.name}


class VerifyParams(StrictModel):
    issuer_base: str  # e.g. https://auth.sevensa.nl: the issuer must be {issuer_base}/realms/{realm}
    realms: list[str] = Field(default_factory=list)  # default: environment.keycloak.realms, else all
    counts_from: str | None = None  # a keycloak.migrate step id whose recorded source counts to use
    test_client: SmokeClient | None = None


class MigrateParams(StrictModel):
    freeze_step: str  # the compose.freeze step that froze Keycloak
    database_step: str  # the postgres.copy step that moved its database (must be in `needs`)
    hostname: str  # the new public hostname, e.g. auth.sevensa.nl
    issuer_scheme: Literal["https", "http"] = "https"
    set_hostname: Annotated[EnvFileHostname | ConfigMapHostname, Field(discriminator="via")]
    realms: list[str] = Field(default_factory=list)
    test_client: SmokeClient | None = None
    # A keycloak.snapshot step that recorded the source's counts while it was still running (the freeze
    # stops the source Keycloak, so it cannot be asked afterwards).
    snapshot_step: str | None = None


class SnapshotParams(StrictModel):
    realms: list[str] = Field(default_factory=list)


# -- clients and the gate -------------------------------------------------------------------------------
def _config(ctx: StepContext) -> KeycloakConfig:
    env = ctx.runbook.environment.keycloak
    if env is None:
        raise PermanentError(f"{ctx.step_id}: the runbook has no environment.keycloak (source, target)")
    return env


def keycloak(ctx: StepContext, side: Literal["source", "target"]) -> KeycloakClient:
    ep: KeycloakEndpoint = getattr(_config(ctx), side)
    password = ctx.secret(ep.admin_password) if ep.admin_password else None
    via = resources.forwarded(ctx.resource, ctx.runbook, ep.port_forward)
    if via is not None:  # the pod's own http port, through the API server; the Host header keeps the name
        parts = urlsplit(ep.url)
        host = ep.host_header or parts.netloc
        ep = ep.model_copy(update={"url": urlunsplit(("http", f"{via[0]}:{via[1]}", parts.path, "", "")),
                                   "host_header": host})
    return ctx.resource(f"keycloak:{side}", lambda: KeycloakClient(ep, password))  # type: ignore[no-any-return]


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def gate(ctx: StepContext, issuer_base: str, realms: list[str], counts: dict[str, dict[str, int]],
         old_issuers: dict[str, str], test_client: SmokeClient | None) -> None:
    """Issuers first (a restart in progress is worth waiting for), then counts and a token."""
    tgt = keycloak(ctx, "target")
    waiting = []
    for realm in realms:
        want = f"{issuer_base.rstrip('/')}/realms/{realm}"
        got = str(tgt.discovery(realm).get("issuer", ""))
        if got == want:
            continue
        old = old_issuers.get(realm, "")
        if old and _host(got) == _host(old):
            waiting.append(f"realm {realm}: the issuer is still the old hostname ({got}); expected {want}")
        else:
            waiting.append(f"realm {realm}: issuer {got or '(none)'}, expected {want}")
    if waiting:
        raise GateNotReady("; ".join(waiting))
    problems = compare_counts(counts, tgt.inventory(sorted(counts)))
    if test_client is not None:
        why = tgt.client_credentials(test_client.realm, test_client.client_id, test_client.client_secret)
        if why:
            problems.append(f"client {test_client.client_id} in realm {test_client.realm}: no token ({why})")
    if problems:
        raise PermanentError("Keycloak parity: " + "; ".join(problems))


def source_snapshot(ctx: StepContext, realms: list[str]) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """The source's counts per realm and its issuers (what the gate compares against)."""
    src = keycloak(ctx, "source")
    counts = src.inventory(realms or _config(ctx).realms or None)
    issuers = {r: str(src.discovery(r).get("issuer", "")) for r in counts}
    return counts, issuers


class CountsFacts(Facts):
    """What keycloak.snapshot (and keycloak.migrate) record of the source before the hostname moves;
    keycloak.verify (counts_from) and keycloak.migrate (snapshot_step) read it back."""

    source_counts: dict[str, Any] | None = None  # per realm; None: not taken yet
    source_issuers: dict[str, Any] = Field(default_factory=dict)


# -- keycloak.verify --------------------------------------------------------------------------------------
@step_type("keycloak.verify")
class KeycloakVerify(ReadOnlyStep[VerifyParams]):
    """The gate: discovery answers on the new address with the new issuer; counts match; a token is issued."""

    def verify(self) -> None:
        recorded = self.ctx.facts_as(CountsFacts, self.params.counts_from) if self.params.counts_from else None
        if recorded is not None and recorded.source_counts is None:
            raise PermanentError(f"{self.ctx.step_id}.with.counts_from: {self.params.counts_from} recorded no "
                                 "source counts (has it run?)")
        if recorded is not None and recorded.source_counts is not None:
            counts, issuers = recorded.source_counts, recorded.source_issuers
        else:
            counts, issuers = source_snapshot(self.ctx, self.params.realms)
        realms = self.params.realms or _config(self.ctx).realms or sorted(counts)
        gate(self.ctx, self.params.issuer_base, realms, counts, issuers, self.params.test_client)


# -- hostname setters ---------------------------------------------------------------------------------------
class HostnameSetter(Protocol):
    def current(self) -> str | None: ...

    def set(self, value: str | None) -> None:
        """Set (None: remove) the hostname, then restart what reads it."""

    def describe(self) -> str: ...


class EnvFileSetter:
    def __init__(self, ctx: StepContext, p: EnvFileHostname) -> None:
        self.ctx, self.p = ctx, p
        self.path = ctx.path(p.path)

    def describe(self) -> str:
        return f"{self.p.key} in {self.path}" + (f", then run {' '.join(self.p.restart)}" if self.p.restart else "")

    def current(self) -> str | None:
        if not self.path.is_file():
            raise PermanentError(f"{self.ctx.step_id}.with.set_hostname.path: {self.path} does not exist")
        return read_env_file(self.path).get(self.p.key)

    def set(self, value: str | None) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        mine = [i for i, line in enumerate(lines) if line.strip().removeprefix("export ").split("=", 1)[0].strip()
                == self.p.key]
        for i in reversed(mine):
            del lines[i]
        if value is not None:
            lines.insert(mine[0] if mine else len(lines), f"{self.p.key}={value}")
        mode = self.path.stat().st_mode & 0o777
        write_atomic(self.path, ("\n".join(lines) + "\n").encode(), mode=mode)
        if self.p.restart:
            try:
                proc = subprocess.run(self.p.restart, capture_output=True, text=True,
                                      timeout=max(1.0, min(120.0, self.ctx.remaining())), env=dict(os.environ))
            except (subprocess.TimeoutExpired, FileNotFoundError) as exc:
                raise PermanentError(f"{self.ctx.step_id}: restart command failed: {exc}") from None
            if proc.returncode != 0:
                tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
                raise PermanentError(f"{self.ctx.step_id}: restart command exited {proc.returncode}: {tail}")


class ConfigMapSetter:
    """On Kubernetes: KC_HOSTNAME in a ConfigMap (merge patch, other keys untouched), then a rollout
    restart of the Deployment (the pod template annotation `kubectl rollout restart` sets)."""

    def __init__(self, ctx: StepContext, p: ConfigMapHostname) -> None:
        self.ctx, self.p = ctx, p

    def describe(self) -> str:
        restart = f", then restart deployment {self.p.restart_deployment}" if self.p.restart_deployment else ""
        return f"{self.p.key} in configmap {self.p.namespace}/{self.p.name}{restart}"

    def _cluster(self) -> Any:
        return resources.kube(self.ctx.resource, self.ctx.runbook)

    def current(self) -> str | None:
        cm = self._cluster().get(Ref("ConfigMap", self.p.name, self.p.namespace))
        if cm is None:
            raise PermanentError(f"configmap {self.p.namespace}/{self.p.name} does not exist on the target")
        value = (cm.get("data") or {}).get(self.p.key)
        return str(value) if value is not None else None

    def _patch(self, kind: str, name: str, body: dict[str, Any]) -> None:
        status, doc = self._cluster().request("PATCH", Ref(kind, name, self.p.namespace).path(), None, body,
                                              "application/merge-patch+json")
        if status != 200:
            raise PermanentError(f"patch {kind} {self.p.namespace}/{name}: HTTP {status} {doc.get('message', '')}")

    def set(self, value: str | None) -> None:
        self._patch("ConfigMap", self.p.name, {"data": {self.p.key: value}})
        if self.p.restart_deployment:
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._patch("Deployment", self.p.restart_deployment, {"spec": {"template": {"metadata": {
                "annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}})


# -- keycloak.snapshot -----------------------------------------------------------------------------------
@step_type("keycloak.snapshot")
class KeycloakSnapshot(Step[SnapshotParams]):
    """Record the source Keycloak's counts and issuers while it still runs (before its freeze)."""

    def check(self) -> Check:
        done = "source_counts" in self.ctx.facts
        return Check(done, "the source's counts are recorded" if done else "")

    def plan(self) -> Plan:
        return Plan(changes=["record the source Keycloak's realm counts and issuers (reads only)"])

    def apply(self) -> None:
        counts, issuers = source_snapshot(self.ctx, self.params.realms)
        self.ctx.record(source_counts=counts, source_issuers=issuers)

    def rollback(self) -> None:
        pass  # it changed nothing

    def report(self) -> dict[str, Any]:
        counts = self.ctx.facts.get("source_counts") or {}
        return {"realms": len(counts), "users": sum(c.get("users", 0) for c in counts.values())}


# -- keycloak.migrate ---------------------------------------------------------------------------------------
@step_type("keycloak.migrate")
class KeycloakMigrate(Step[MigrateParams]):
    """Keycloak on the target with its new hostname, after its database was copied by postgres.copy."""

    def _setter(self) -> HostnameSetter:
        p = self.params.set_hostname
        return EnvFileSetter(self.ctx, p) if isinstance(p, EnvFileHostname) else ConfigMapSetter(self.ctx, p)

    def _issuer_base(self) -> str:
        return f"{self.params.issuer_scheme}://{self.params.hostname}"

    def _preconditions(self) -> list[str]:
        problems = []
        needs = self.ctx.runbook.step(self.ctx.step_id).spec.needs
        for what, sid in (("freeze_step", self.params.freeze_step), ("database_step", self.params.database_step)):
            if sid not in self.ctx.runbook.step_ids():
                problems.append(f"with.{what}: no step {sid} in the runbook")
            elif sid not in needs:
                problems.append(f"with.{what}: add {sid} to `needs:` (Keycloak moves after it)")
            elif self.ctx.status_of(sid) != "succeeded":
                problems.append(f"{sid} is {self.ctx.status_of(sid)}; it must have succeeded first")
        return problems

    def check(self) -> Check:
        current = self._setter().current()
        # The hostname alone is not proof: manifests may set it already, and then Keycloak must still be
        # restarted onto the copied database and the source's counts recorded. Done = both happened here.
        if current == self.params.hostname and "source_counts" in self.ctx.facts and "hostname" in self.ctx.facts:
            return Check(True, f"the target's hostname is {current}")
        return Check(False, f"the target's hostname is {current or 'unset'}")

    def plan(self) -> Plan:
        setter = self._setter()
        plan = Plan(changes=["record the source's realm counts and issuers",
                             f"set {setter.describe()}: {setter.current() or 'unset'} -> {self.params.hostname}"])
        plan.unknowns += self._preconditions()
        return plan

    def apply(self) -> None:
        problems = self._preconditions()
        if problems:
            raise PermanentError(f"{self.ctx.step_id}: " + "; ".join(problems))
        if "source_counts" not in self.ctx.facts:  # before the hostname moves, once
            if self.params.snapshot_step:
                snap = self.ctx.facts_as(CountsFacts, self.params.snapshot_step)
                if snap.source_counts is None:
                    raise PermanentError(f"{self.ctx.step_id}: {self.params.snapshot_step} recorded no source "
                                         "counts; run it (before the freeze)")
                counts, issuers = snap.source_counts, snap.source_issuers
            else:
                counts, issuers = source_snapshot(self.ctx, self.params.realms)
            self.ctx.record(source_counts=counts, source_issuers=issuers)
        setter = self._setter()
        if "previous_hostname" not in self.ctx.facts:
            self.ctx.record(previous_hostname=setter.current())
        setter.set(self.params.hostname)
        self.ctx.record(hostname=self.params.hostname)

    def verify(self) -> None:
        counts = self.ctx.facts.get("source_counts")
        issuers = self.ctx.facts.get("source_issuers", {})
        if counts is None:  # applied by an earlier state (check found it done): read the source live
            counts, issuers = source_snapshot(self.ctx, self.params.realms)
        realms = self.params.realms or _config(self.ctx).realms or sorted(counts)
        gate(self.ctx, self._issuer_base(), realms, counts, issuers, self.params.test_client)

    def rollback(self) -> None:
        if "previous_hostname" not in self.ctx.facts:
            return  # the hostname was never changed
        previous = self.ctx.facts["previous_hostname"]
        self._setter().set(previous)
        self.ctx.record(hostname=previous)

    def rollback_plan(self) -> Plan:
        if "previous_hostname" not in self.ctx.facts:
            return Plan()
        return Plan(changes=[f"set {self._setter().describe()} back to "
                             f"{self.ctx.facts['previous_hostname'] or 'unset'}"])

    def report(self) -> dict[str, Any]:
        counts = self.ctx.facts.get("source_counts") or {}
        return {"realms": len(counts), "users": sum(c.get("users", 0) for c in counts.values())}
