"""tls.import-acme: the VPS Traefik's ACME certificates into `kubernetes.io/tls` Secrets, named as the
cluster's Ingresses reference them, before DNS points at the cluster.

The Ingresses of `namespaces` say which Secrets must exist (spec.tls[].secretName) and for which hosts;
acme.json is read over the run's SSH session (from the VPS's filesystem, or inside Traefik's container);
each Secret gets the certificate covering all its hosts that expires last. Key material goes to the API
server in the apply body only: state and journal hold names, fingerprints and expiry dates, and a Secret
that existed before is backed up (0600, under the state dir) for rollback, as kube.secret does.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import TYPE_CHECKING, Any

from pydantic import Field

from migrator import redact
from migrator.errors import GateNotReady, PermanentError
from migrator.steps.base import Check, Plan, Step, StrictModel, step_type
from migrator.steps.kube import cluster, record_prior, restore, secret_digest

if TYPE_CHECKING:
    from migrator.adapters.acme import AcmeCert

MANAGED = {"app.kubernetes.io/managed-by": "migrator"}


class ImportAcmeParams(StrictModel):
    namespaces: list[str] = Field(min_length=1)  # whose Ingresses name the Secrets (spec.tls)
    path: str = "/letsencrypt/acme.json"  # on the VPS, or inside `container`
    container: str | None = None  # read with `docker exec CONTAINER cat PATH` (Traefik's own volume)
    resolver: str | None = None  # the certificates resolver; default every one in the file
    min_days: float = Field(default=0, ge=0, le=3650)  # refuse a certificate expiring sooner than this


class Wanted(StrictModel):
    namespace: str
    secret: str
    hosts: list[str]
    ingresses: list[str]


@step_type("tls.import-acme")
class ImportAcme(Step[ImportAcmeParams]):
    """Create the Ingresses' TLS Secrets from the VPS Traefik's acme.json; rollback restores what was there."""

    description = "import the VPS Traefik's ACME certificates as the Ingresses' kubernetes.io/tls Secrets"

    _certs: list[AcmeCert] | None = None
    _objects: list[tuple[Any, dict[str, Any], AcmeCert]] | None = None

    # -- what is wanted, and from where ------------------------------------------------------------------
    def wanted(self) -> list[Wanted]:
        kube = cluster(self.ctx)
        out: dict[tuple[str, str], Wanted] = {}
        for ns in self.params.namespaces:
            for ing in kube.list_objects("Ingress", ns):
                name = ing["metadata"]["name"]
                for tls in (ing.get("spec") or {}).get("tls") or []:
                    secret = tls.get("secretName")
                    if not secret:
                        continue  # no secretName: the ingress controller's default certificate, not ours
                    w = out.setdefault((ns, secret), Wanted(namespace=ns, secret=secret, hosts=[], ingresses=[]))
                    w.hosts = list(dict.fromkeys([*w.hosts, *(h.lower() for h in tls.get("hosts") or [])]))
                    w.ingresses.append(name)
        if not out:
            raise PermanentError(f"{self.ctx.step_id}: no Ingress in {', '.join(self.params.namespaces)} names a TLS "
                                 "Secret (spec.tls[].secretName): nothing to import into")
        return sorted(out.values(), key=lambda w: (w.namespace, w.secret))

    def _where(self) -> str:
        p = self.params
        return f"VPS:{p.path}" if p.container is None else f"VPS container {p.container}:{p.path}"

    def certificates(self) -> list[AcmeCert]:
        if self._certs is None:
            from migrator.adapters import resources
            from migrator.adapters.acme import parse

            p = self.params
            ssh = resources.ssh_source(self.ctx.resource, self.ctx.runbook, self.ctx.step_id)
            source = self.ctx.runbook.environment.source
            argv = ["cat", "--", p.path] if p.container is None else \
                [source.docker_cli if source else "docker", "exec", p.container, "cat", "--", p.path]
            got = ssh.run(argv, timeout=60)
            if got.rc != 0:
                why = got.stderr.decode("utf-8", "replace").strip().splitlines()
                raise PermanentError(f"{self.ctx.step_id}: cannot read {self._where()}: "
                                     f"{why[-1] if why else f'exit {got.rc}'}")
            certs = parse(got.stdout, self._where(), p.resolver)
            for c in certs:  # masked wherever they might be echoed (the journal and logs mask registered values)
                redact.register(c.key_pem.decode())
                redact.register(base64.b64encode(c.key_pem).decode())
            self._certs = certs
        return self._certs

    def objects(self) -> list[tuple[Any, dict[str, Any], AcmeCert]]:
        """(Ref, Secret, certificate) per wanted Secret; PermanentError naming every host left uncovered."""
        if self._objects is None:
            from migrator.adapters.acme import best_for
            from migrator.adapters.kube import Ref

            certs = self.certificates()
            out, missing = [], []
            soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.params.min_days)
            for w in self.wanted():
                cert = best_for(certs, w.hosts)
                where = f"Secret {w.namespace}/{w.secret} (Ingress {', '.join(w.ingresses)})"
                if cert is None:
                    uncovered = [h for h in w.hosts if not any(c.covers(h) for c in certs)] or w.hosts
                    missing.append(f"{where}: no certificate in {self._where()} covers "
                                   f"{', '.join(uncovered)}")
                    continue
                if cert.not_after <= soon:
                    missing.append(f"{where}: the best certificate, {cert.describe()}, expires within "
                                   f"{self.params.min_days:g} days")
                    continue
                obj = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                       "metadata": {"name": w.secret, "namespace": w.namespace, "labels": dict(MANAGED),
                                    "annotations": {"migrator/acme-fingerprint": cert.fingerprint}},
                       "data": {"tls.crt": base64.b64encode(cert.chain_pem).decode(),
                                "tls.key": base64.b64encode(cert.key_pem).decode()}}
                out.append((Ref("Secret", w.secret, w.namespace), obj, cert))
            if missing:
                raise PermanentError(f"{self.ctx.step_id}: " + "; ".join(missing)
                                     + " (issue them on the VPS first, or use cert-manager for these hosts)")
            self._objects = out
        return self._objects

    # -- the step contract --------------------------------------------------------------------------------
    def _off(self) -> list[str]:
        kube = cluster(self.ctx)
        off = []
        for ref, obj, _ in self.objects():
            live = kube.get(ref)
            if live is None or secret_digest(live.get("data"), live.get("type")) != secret_digest(obj["data"], obj["type"]):
                off.append(str(ref))
        return off

    def check(self) -> Check:
        off = self._off()
        if off:
            return Check(False, f"not in place: {', '.join(off)}")
        return Check(True, f"{len(self.objects())} TLS Secrets hold the ACME certificates")

    def plan(self) -> Plan:
        kube = cluster(self.ctx)
        plan = Plan()
        for ref, obj, cert in self.objects():
            kube.apply(obj, dry_run=True)
            plan.change(f"{'update' if kube.get(ref) else 'create'} {ref} from {cert.describe()}")
        return plan

    def apply(self) -> None:
        kube = cluster(self.ctx)
        objects = self.objects()
        priors: dict[str, Any] = dict(self.ctx.facts.get("priors") or {})
        for ref, _, _ in objects:  # first attempt per Secret only: later ones would back up our own write
            if str(ref) not in priors:
                priors[str(ref)] = record_prior(self.ctx, ref, kube.get(ref))
        self.ctx.record(priors=priors)
        for _, obj, _ in objects:
            kube.apply(obj)
        self.ctx.record(imported={str(ref): {"main": c.main, "sans": list(c.sans), "resolver": c.resolver,
                                             "fingerprint": c.fingerprint, "not_after": c.not_after.isoformat()}
                                  for ref, _, c in objects})

    def verify(self) -> None:
        off = self._off()
        if off:
            raise GateNotReady(f"not holding the imported certificate: {', '.join(off)}")

    def report(self) -> dict[str, Any]:
        return {"imported": self.ctx.facts.get("imported") or {}}

    def rollback(self) -> None:
        kube = cluster(self.ctx)
        priors: dict[str, Any] = self.ctx.facts.get("priors") or {}
        for key in sorted(priors, reverse=True):
            self.ctx.log.info("rollback", result=restore(self.ctx, kube, priors[key]))

    def rollback_plan(self) -> Plan:
        priors: dict[str, Any] = self.ctx.facts.get("priors") or {}
        return Plan(changes=[f"{'restore (from the backup file)' if e.get('existed') else 'delete'} {k}"
                             for k, e in sorted(priors.items())])
