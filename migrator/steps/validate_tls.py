"""validate.tls: a TLS handshake through the ingress for every public host, before DNS points at it.

For each host: connect to the ingress address, present the host name (SNI), and require that the chain
verifies against the runbook's CA bundle (`ca_file`; the system CAs when unset), that the certificate
names the host, and that it expires more than `min_days` from now. One line per failing host.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import Field, model_validator

from migrator.adapters.tlscheck import handshake
from migrator.errors import GateNotReady
from migrator.steps.base import StepContext, step_type
from migrator.steps.validate import MAX_PARALLEL, Endpoint, Validation, resolve_target


class TLSParams(Endpoint):
    hosts: list[str] = Field(default_factory=list, max_length=500)
    domain: str | None = None
    names: list[str] = Field(default_factory=list, max_length=500)  # "@" is the domain itself
    min_days: float = Field(default=14, ge=0, le=3650)  # a certificate expiring sooner fails the gate

    @model_validator(mode="after")
    def _some_hosts(self) -> TLSParams:
        if self.names and not self.domain:
            raise ValueError("`names` needs `domain`")
        if not self.hosts and not self.names:
            raise ValueError("give `hosts:` or `domain:` + `names:`")
        if not self.tls_verify:
            raise ValueError("tls_verify: false makes this gate meaningless; give `ca_file:` instead")
        return self

    def all_hosts(self) -> list[str]:
        named = [self.domain if n in ("@", "") else f"{n}.{self.domain}" for n in self.names]
        return list(dict.fromkeys(h.lower().rstrip(".") for h in [*self.hosts, *named] if h))


@step_type("validate.tls")
class TLS(Validation[TLSParams]):
    """Every public host's certificate through the ingress: trusted chain, matching name, expiry far enough."""

    description = "TLS handshake through the ingress for every public host (chain, name, expiry)"

    def __init__(self, ctx: StepContext, params: TLSParams) -> None:
        super().__init__(ctx, params)
        self._report: dict[str, Any] = {}

    def verify(self) -> None:
        p = self.params
        target = resolve_target(self.ctx, p)
        ca = str(self.ctx.path(p.ca_file)) if p.ca_file else None
        hosts = p.all_hosts()
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(hosts))) as pool:
            results = list(pool.map(lambda h: handshake(target.address, target.port, h, ca_file=ca,
                                                        timeout=p.timeout_s), hosts))
        report: dict[str, Any] = {}
        failures = []
        for r in results:
            days = r.days_left()
            entry: dict[str, Any] = {"issuer": r.issuer, "days_left": round(days, 1) if days is not None else None}
            problem = r.error
            if problem is None and days is not None and days < p.min_days:
                problem = f"expires in {days:.1f} days (the runbook wants more than {p.min_days:g})"
            if problem:
                entry["error"] = problem
                failures.append(f"{r.host}: {problem}")
            report[r.host] = entry
        where = f"{target.address}:{target.port}"
        self._report = {"through": where, "hosts_checked": len(hosts), "hosts_failed": len(failures),
                        "min_days": p.min_days, "hosts": report}
        self.ctx.journal("validate-tls", through=where, hosts_checked=len(hosts),
                failed=[f.split(":", 1)[0] for f in failures])
        if failures:
            raise GateNotReady(f"{len(failures)} of {len(hosts)} hosts fail TLS through {where}: "
                               + "; ".join(failures[:20]) + (f"; and {len(failures) - 20} more" if len(failures) > 20 else ""))

    def report(self) -> dict[str, Any]:
        return self._report
