"""kube.secret: a Kubernetes Secret filled from the runbook's secrets or OpenBao paths.

The values are resolved in memory (and registered for redaction), sent to the API server in the apply
body, and nowhere else: check compares digests, the state records digests, and the prior Secret (if
one existed) goes to a 0600 backup file under the state dir for rollback.
"""

from __future__ import annotations

import base64
from typing import Any

from pydantic import Field, model_validator

from migrator.adapters.kube import Ref
from migrator.adapters.openbao import token_client
from migrator.errors import GateNotReady, PermanentError
from migrator.runbook.model import OpenBaoRef, OpenBaoSecret
from migrator.runbook.secrets import SecretResolver
from migrator.steps.base import Check, Plan, Step, StrictModel, step_type
from migrator.steps.kube import cluster, record_prior, restore, secret_data_b64, secret_digest


class SecretSource(StrictModel):
    secret: str | None = None  # a name in the runbook's `secrets:` (env, file or OpenBao reference)
    openbao: OpenBaoRef | None = None  # read from environment.openbao.source directly
    # A value written in the runbook: a plain one (a user name) or one composed with ${secrets.x}
    # (a database URL); composed values are resolved in memory only, like every secret.
    value: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretSource:
        if sum(x is not None for x in (self.secret, self.openbao, self.value)) != 1:
            raise ValueError("give exactly one of secret, openbao, value")
        return self


class SecretParams(StrictModel):
    namespace: str
    name: str
    type: str = "Opaque"
    data: dict[str, SecretSource] = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    force_conflicts: bool = False  # take over keys another field manager (kubectl, helm) set


@step_type("kube.secret")
class KubeSecret(Step[SecretParams]):
    """Create or update one Secret; values never reach logs or state (digests only)."""

    description = "fill a Kubernetes Secret from secret references"

    def _value(self, key: str, src: SecretSource) -> str:
        if src.value is not None:
            return src.value
        if src.secret is not None:
            return self.ctx.secret(src.secret)
        assert src.openbao is not None
        return self._openbao(key, src.openbao)

    def _openbao(self, key: str, ref: OpenBaoRef) -> str:
        env = self.ctx.runbook.environment.openbao
        if env is None:
            raise PermanentError(f"{self.ctx.step_id}: data.{key} reads OpenBao, but the runbook has no environment.openbao")
        source = env.source

        def client() -> Any:
            token = self.ctx.secret(source.token) if source.token else None
            verify: bool | str = source.ca_file if source.ca_file else source.tls_verify
            return self.ctx.resource(f"hvac:{source.address}",
                                     lambda: token_client(source.address, token, verify))

        # The resolver brings the error handling (retry on connection errors) and redaction.
        resolver = SecretResolver({key: OpenBaoSecret(openbao=ref)}, self.ctx.runbook.dir, client)
        return resolver.get(key)

    def _object(self) -> dict[str, Any]:
        if not hasattr(self, "_obj"):
            p = self.params
            data = {k: base64.b64encode(self._value(k, src).encode()).decode() for k, src in sorted(p.data.items())}
            meta: dict[str, Any] = {"name": p.name, "namespace": p.namespace}
            if p.labels:
                meta["labels"] = dict(p.labels)
            self._obj = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": p.type, "data": data}
        return self._obj

    def _ref(self) -> Any:
        return Ref("Secret", self.params.name, self.params.namespace)

    def _digest(self) -> str:
        obj = self._object()
        return secret_digest(obj["data"], obj["type"])

    def check(self) -> Check:
        live = cluster(self.ctx).get(self._ref())
        if live is None:
            return Check(False, f"{self._ref()} does not exist")
        if secret_digest(live.get("data"), live.get("type")) != self._digest():
            return Check(False, f"{self._ref()}: data differs (digest)")
        labels = (live.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in self.params.labels.items()):
            return Check(False, f"{self._ref()}: labels differ")
        return Check(True, f"{self._ref()} holds the expected data ({self._digest()[:19]}…)")

    def plan(self) -> Plan:
        kube = cluster(self.ctx)
        live = kube.get(self._ref())
        kube.apply(self._object(), dry_run=True, force=self.params.force_conflicts)  # the server's verdict, changing nothing
        keys = ", ".join(sorted(self.params.data))
        return Plan(changes=[f"{'update' if live else 'create'} {self._ref()} (keys: {keys})"])

    def apply(self) -> None:
        kube = cluster(self.ctx)
        if "existed" not in self.ctx.facts:  # first attempt only: later ones would back up our own write
            self.ctx.record(**record_prior(self.ctx, self._ref(), kube.get(self._ref())))
        kube.apply(self._object(), force=self.params.force_conflicts)
        self.ctx.record(applied_digest=self._digest())

    def verify(self) -> None:
        live = cluster(self.ctx).get(self._ref())
        if live is None or secret_digest(live.get("data"), live.get("type")) != self._digest():
            raise GateNotReady(f"{self._ref()} does not hold the applied data")

    def rollback(self) -> None:
        facts = dict(self.ctx.facts)
        if "existed" not in facts:
            return  # apply never started
        self.ctx.log.info("rollback", result=restore(self.ctx, cluster(self.ctx), facts))

    def rollback_plan(self) -> Plan:
        existed = self.ctx.facts.get("existed")
        return Plan(changes=[f"{'restore (from the backup file)' if existed else 'delete'} {self._ref()}"])


__all__ = ["KubeSecret", "secret_data_b64"]
