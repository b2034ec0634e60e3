"""tls.import-acme: the VPS Traefik's ACME certificates into `kubernetes.io/tls` Secrets, named as the
cluster's Ingresses reference them, before DNS points at the cluster.

The Ingresses of `namespaces` say which Secrets must exist (spec.tls[].secretName) and for which hosts;
acme.json is read over the run's SSH session (from the VPS's filesystem, or inside Traefik's container, named
by its compose service as the other source steps name theirs);
each Secret gets the certificate covering all its hosts that expires last. Key material goes to the API
server in the apply body only: state and journal hold names, fingerprints and expiry dates, and a Secret
that existed before is backed up (0600, under the state dir) for rollback, as kube.secret does.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from migrator import redact
from migrator.adapters import resources
from migrator.adapters.acme import best_for, parse
from migrator.adapters.kube import Ref
from migrator.errors import GateNotReady, PermanentError
from migrator.steps.base import Check, Facts, Plan, Step, StepContext, StrictModel, step_type
from migrator.steps.kube import cluster, record_prior, restore, secret_digest, wait_gone
from migrator.steps.postgres.pg_common import container_of, docker_remote

if TYPE_CHECKING:
    from migrator.adapters.acme import AcmeCert

MANAGED = {"app.kubernetes.io/managed-by": "migrator"}
TLS_TYPE = "kubernetes.io/tls"


class ImportAcmeParams(StrictModel):
    namespaces: list[str] = Field(min_length=1)  # whose Ingresses name the Secrets (spec.tls)
    path: str = "/letsencrypt/acme.json"  # on the VPS, or inside `container`
    # Traefik's compose service (or container name) in environment.source's project: read inside it, from
    # the volume Traefik keeps it in. None: `path` is a file of the VPS itself.
    container: str | None = None
    resolver: str | None = None  # the certificates resolver; default every one in the file
    min_days: float = Field(default=0, ge=0, le=3650)  # refuse a certificate expiring sooner than this


class Imported(Facts):
    """One imported certificate as the state records it: no key material."""

    main: str
    sans: list[str]
    resolver: str
    fingerprint: str  # sha256 of the leaf, hex
    not_after: str  # ISO 8601, UTC


class ImportAcmeFacts(Facts):
    """What tls.import-acme records; `priors` before the first write (rollback), `imported` after."""

    priors: dict[str, dict[str, Any]] | None = None  # "Secret ns/name" -> kube.record_prior's entry
    imported: dict[str, Imported] = Field(default_factory=dict)


@dataclass(frozen=True)
class Wanted:
    """One Secret the Ingresses name, with every host it must cover (in the order the Ingresses give)."""

    namespace: str
    secret: str
    hosts: tuple[str, ...]
    ingresses: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    ref: Ref
    obj: dict[str, Any]  # the Secret to apply: holds the key, so never logged nor recorded
    cert: AcmeCert


def wanted(ctx: StepContext, namespaces: list[str]) -> list[Wanted]:
    """The TLS Secrets the Ingresses of `namespaces` name; [] when none does (yet)."""
    kube = cluster(ctx)
    hosts: dict[tuple[str, str], list[str]] = {}
    names: dict[tuple[str, str], list[str]] = {}
    for ns in namespaces:
        for ing in kube.list_objects("Ingress", ns):
            name = ing["metadata"]["name"]
            for tls in (ing.get("spec") or {}).get("tls") or []:
                secret = tls.get("secretName")
                if not secret:
                    continue  # no secretName: the ingress controller's default certificate, not ours
                key = (ns, secret)
                hosts.setdefault(key, []).extend(h.lower().rstrip(".") for h in tls.get("hosts") or [])
                names.setdefault(key, []).append(name)
    return [Wanted(ns, secret, tuple(dict.fromkeys(hosts[(ns, secret)])), tuple(dict.fromkeys(names[(ns, secret)])))
            for ns, secret in sorted(hosts)]


@step_type("tls.import-acme")
class ImportAcme(Step[ImportAcmeParams]):
    """Create the Ingresses' TLS Secrets from the VPS Traefik's acme.json; rollback restores what was there."""

    description = "import the VPS Traefik's ACME certificates as the Ingresses' kubernetes.io/tls Secrets"

    def __init__(self, ctx: StepContext, params: ImportAcmeParams) -> None:
        super().__init__(ctx, params)
        self._certs: list[AcmeCert] | None = None
        self._targets: list[Target] | None = None

    # -- what is wanted, and from where ------------------------------------------------------------------
    def _where(self) -> str:
        p = self.params
        return f"VPS:{p.path}" if p.container is None else f"VPS container {p.container}:{p.path}"

    def _none_named(self) -> str:
        return f"no Ingress in {', '.join(self.params.namespaces)} names a TLS Secret (spec.tls[].secretName)"

    def certificates(self) -> list[AcmeCert]:
        if self._certs is None:
            p = self.params
            if p.container is None:
                ssh = resources.ssh_source(self.ctx.resource, self.ctx.runbook, self.ctx.step_id)
                got = ssh.run(["cat", "--", p.path], timeout=60)
                rc, out, err = got.rc, got.stdout, got.stderr
            else:
                container = container_of(self.ctx, p.container)
                rc, out, err = docker_remote(self.ctx).exec_run(container.name, ["cat", "--", p.path])
            if rc != 0:
                why = err.decode("utf-8", "replace").strip().splitlines()
                raise PermanentError(f"{self.ctx.step_id}: cannot read {self._where()}: "
                                     f"{why[-1] if why else f'exit {rc}'}")
            certs = parse(out, self._where(), p.resolver)
            for c in certs:  # masked wherever they might be echoed (logs, journal and state mask registered values)
                redact.register(c.key_pem.decode())
                redact.register(base64.b64encode(c.key_pem).decode())
            self._certs = certs
        return self._certs

    def targets(self) -> list[Target]:
        """The Secret per wanted name; PermanentError naming every host left uncovered or expiring too soon."""
        if self._targets is None:
            want = wanted(self.ctx, self.params.namespaces)
            if not want:
                raise PermanentError(f"{self.ctx.step_id}: {self._none_named()}: nothing to import into")
            certs = self.certificates()
            out, problems = [], []
            soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.params.min_days)
            for w in want:
                where = f"Secret {w.namespace}/{w.secret} (Ingress {', '.join(w.ingresses)})"
                if not w.hosts:
                    problems.append(f"{where}: spec.tls names no hosts (cannot tell which certificate)")
                    continue
                cert = best_for(certs, list(w.hosts))
                if cert is None:
                    uncovered = [h for h in w.hosts if not any(c.covers(h) for c in certs)]
                    problems.append(f"{where}: no certificate in {self._where()} covers "
                                    + (', '.join(uncovered) if uncovered else f"all of {', '.join(w.hosts)} at once"))
                    continue
                if cert.not_after <= soon:
                    problems.append(f"{where}: the best certificate, {cert.describe()}, expires within "
                                    f"{self.params.min_days:g} days")
                    continue
                obj = {"apiVersion": "v1", "kind": "Secret", "type": TLS_TYPE,
                       "metadata": {"name": w.secret, "namespace": w.namespace, "labels": dict(MANAGED),
                                    "annotations": {"migrator/acme-fingerprint": cert.fingerprint}},
                       "data": {"tls.crt": base64.b64encode(cert.chain_pem).decode(),
                                "tls.key": base64.b64encode(cert.key_pem).decode()}}
                out.append(Target(Ref("Secret", w.secret, w.namespace), obj, cert))
            if problems:
                raise PermanentError(f"{self.ctx.step_id}: " + "; ".join(problems)
                                     + " (issue them on the VPS first, or use cert-manager for these hosts)")
            self._targets = out
        return self._targets

    # -- the step contract --------------------------------------------------------------------------------
    def _off(self) -> list[str]:
        kube = cluster(self.ctx)
        off = []
        for t in self.targets():
            live = kube.get(t.ref)
            if live is None or secret_digest(live.get("data"), live.get("type")) != secret_digest(t.obj["data"], TLS_TYPE):
                off.append(str(t.ref))
        return off

    def check(self) -> Check:
        if not wanted(self.ctx, self.params.namespaces):
            return Check(False, self._none_named() + " yet")
        off = self._off()
        if off:
            return Check(False, f"not in place: {', '.join(off)}")
        return Check(True, f"{len(self.targets())} TLS Secrets hold the ACME certificates")

    @staticmethod
    def _recreate(live: dict[str, Any] | None) -> bool:
        """A Secret whose type is not kubernetes.io/tls (or that is immutable) cannot be updated in place."""
        return live is not None and ((live.get("type") or "Opaque") != TLS_TYPE or live.get("immutable") is True)

    def plan(self) -> Plan:
        if not wanted(self.ctx, self.params.namespaces):
            # The Ingresses come from an earlier step of the run: what acme.json offers is known, not yet
            # which Secrets they name. Reading it now still proves the path and the certificates.
            certs = self.certificates()
            return Plan(changes=[f"import from {self._where()} ({len(certs)} certificates: "
                                 + "; ".join(c.describe() for c in certs) + ")"],
                        unknowns=[f"{self._none_named()} yet: which Secrets, and whether every host is covered, is "
                                  "known when they exist (the step fails then, naming each host left uncovered)"])
        kube = cluster(self.ctx)
        plan = Plan()
        for t in self.targets():
            live = kube.get(t.ref)
            if self._recreate(live):
                plan.change(f"replace {t.ref} (type {(live or {}).get('type') or 'Opaque'}: deleted, then created) "
                            f"from {t.cert.describe()}")
                continue
            kube.apply(t.obj, dry_run=True)  # the server's verdict, changing nothing
            plan.change(f"{'update' if live else 'create'} {t.ref} from {t.cert.describe()}")
        return plan

    def apply(self) -> None:
        kube = cluster(self.ctx)
        targets = self.targets()
        priors = dict(self.ctx.facts_as(ImportAcmeFacts).priors or {})
        lives = {str(t.ref): kube.get(t.ref) for t in targets}
        for t in targets:  # first attempt per Secret only: later ones would back up our own write
            if str(t.ref) not in priors:
                priors[str(t.ref)] = record_prior(self.ctx, t.ref, lives[str(t.ref)])
        self.ctx.record(priors=priors)
        for t in targets:
            if self._recreate(lives[str(t.ref)]):
                kube.delete(t.ref)  # backed up above; a crash here leaves it missing, and a resume creates it
                wait_gone(self.ctx, kube, [t.ref], limit=30.0)
                self.ctx.failpoint("after-delete")
            kube.apply(t.obj)
        self.ctx.record(imported={str(t.ref): Imported(
            main=t.cert.main, sans=list(t.cert.sans), resolver=t.cert.resolver, fingerprint=t.cert.fingerprint,
            not_after=t.cert.not_after.isoformat()).model_dump() for t in targets})
        self.ctx.journal("tls-imported", secrets={str(t.ref): t.cert.fingerprint for t in targets})

    def verify(self) -> None:
        off = self._off()
        if off:
            raise GateNotReady(f"not holding the imported certificate: {', '.join(off)}")

    def report(self) -> dict[str, Any]:
        return {"imported": {k: v.model_dump() for k, v in self.ctx.facts_as(ImportAcmeFacts).imported.items()}}

    def rollback(self) -> None:
        kube = cluster(self.ctx)
        priors = self.ctx.facts_as(ImportAcmeFacts).priors or {}
        for key in sorted(priors, reverse=True):
            self.ctx.log.info("rollback", result=restore(self.ctx, kube, priors[key]))

    def rollback_plan(self) -> Plan:
        priors = self.ctx.facts_as(ImportAcmeFacts).priors or {}
        return Plan(changes=[f"{'restore (from the backup file)' if e.get('existed') else 'delete'} {k}"
                             for k, e in sorted(priors.items())])
