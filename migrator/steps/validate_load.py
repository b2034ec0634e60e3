"""validate.load: a bounded load test, gated on latency and error thresholds.

The generator (migrator/adapters/loadtest.py) stops at whichever bound comes first: `requests` or `duration_s`,
and paces itself to `rate` requests/s when given. The target is loopback (127.0.0.0/8) unless the runbook
says `allow_remote: true` (phase 4 against a real cluster's ingress): then it needs a `rate`, and requests,
seconds, concurrency and rate stay within the adapter's REMOTE_* bounds (checked when the runbook is read).
Otherwise a non-loopback target is refused with a PermanentError before any socket is opened. A threshold
exceeded is permanent too: retrying a load test until it happens to pass would hide the problem.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from pydantic import Field, model_validator

from migrator.adapters import loadtest as lt
from migrator.adapters.loadtest import LoadSpec, NotLoopback, loopback_ip, remote_ip, run_load, tls_context
from migrator.errors import PermanentError
from migrator.steps.base import StepContext, StrictModel, step_type
from migrator.steps.validate import Scheme, Validation


class LoadParams(StrictModel):
    url: str | None = None  # http(s)://127.x.y.z:port/path, or address + port + host + path
    address: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    scheme: Scheme = "http"
    host: str | None = None  # Host header (the public name routed by the ingress)
    path: str = "/"
    requests: int = Field(default=500, ge=1, le=100_000)  # at most this many
    duration_s: float = Field(default=10, gt=0, le=600)  # at most this long
    concurrency: int = Field(default=8, ge=1, le=64)
    timeout_s: float = Field(default=5, gt=0, le=60)  # per request
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    tls_verify: bool = True
    ca_file: str | None = None
    p50_ms: float | None = Field(default=None, gt=0)
    p95_ms: float | None = Field(default=None, gt=0)
    p99_ms: float | None = Field(default=None, gt=0)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    min_requests: int = Field(default=1, ge=1)  # fewer completed requests than this fails the gate
    rate: float | None = Field(default=None, gt=0)  # requests per second at most
    allow_remote: bool = False  # a target outside loopback: the runbook's explicit choice, bounded tighter

    @model_validator(mode="after")
    def _where(self) -> LoadParams:
        if bool(self.url) == bool(self.address):
            raise ValueError("give either `url:` or `address:` (+ `port:`, `host:`, `path:`)")
        if self.address and self.port is None:
            raise ValueError("`address:` needs `port:`")
        if not self.path.startswith("/"):
            raise ValueError("`path:` starts with /")
        if self.allow_remote:
            over = [f"{name} {value:g} > {limit:g}" for name, value, limit in (
                ("requests", self.requests, lt.REMOTE_MAX_REQUESTS), ("duration_s", self.duration_s,
                 lt.REMOTE_MAX_DURATION_S), ("concurrency", self.concurrency, lt.REMOTE_MAX_CONCURRENCY),
                ("rate", self.rate or 0, lt.REMOTE_MAX_RATE)) if value > limit]
            if self.rate is None:
                over.insert(0, "`rate:` (requests/s) is required")
            if over:
                raise ValueError(f"allow_remote: {'; '.join(over)} (a remote target gets a bounded, paced load)")
        return self


@step_type("validate.load")
class Load(Validation[LoadParams]):
    """A bounded burst of GETs (loopback, or a remote target the runbook allows); fails naming the threshold."""

    description = "bounded load test with latency and error thresholds (loopback unless allow_remote)"

    def __init__(self, ctx: StepContext, params: LoadParams) -> None:
        super().__init__(ctx, params)
        self._report: dict[str, Any] = {}

    def spec(self) -> Any:
        p = self.params
        scheme, address, port, path, host = p.scheme, p.address or "", p.port or 0, p.path, p.host
        if p.url:
            u = urllib.parse.urlsplit(p.url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise PermanentError(f"{self.ctx.step_id}.url: {p.url!r} is not an http(s) URL")
            scheme = "https" if u.scheme == "https" else "http"
            address, port = u.hostname, u.port or (443 if scheme == "https" else 80)
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        try:
            address = remote_ip(address) if p.allow_remote else loopback_ip(address)
        except NotLoopback as exc:
            hint = "" if p.allow_remote else " (a runbook may allow a remote target: allow_remote: true, with rate)"
            raise PermanentError(f"{self.ctx.step_id}: refused: {exc}{hint}") from None
        tls = tls_context(p.tls_verify, str(self.ctx.path(p.ca_file)) if p.ca_file else None) if scheme == "https" else None
        return LoadSpec(address=address, port=port, path=path, host_header=host, requests=p.requests,
                        duration_s=p.duration_s, concurrency=p.concurrency, timeout_s=p.timeout_s,
                        expect_status=tuple(p.expect_status), tls=tls, rate=p.rate, allow_remote=p.allow_remote)

    def verify(self) -> None:
        p = self.params
        spec = self.spec()  # refuses a non-loopback target before any traffic
        result = run_load(spec)
        figures = result.summary()
        target = f"{spec.address}:{spec.port}{spec.path}" + (f" (Host {spec.host_header})" if spec.host_header else "")
        self._report = {"target": target, **figures}
        self.ctx.record(last_load=self._report)
        self.ctx.journal("validate-load", **self._report)
        exceeded = []
        for name, limit in (("p50_ms", p.p50_ms), ("p95_ms", p.p95_ms), ("p99_ms", p.p99_ms)):
            value = figures[name]
            if limit is not None and isinstance(value, float) and value > limit:
                exceeded.append(f"{name} {value:g} > {limit:g}")
        if result.error_rate > p.max_error_rate:
            kinds = ", ".join(f"{k} ×{n}" for k, n in result.error_kinds.most_common(3))
            exceeded.append(f"error rate {result.error_rate:.2%} > {p.max_error_rate:.2%} ({kinds})")
        if result.ok < p.min_requests:
            exceeded.append(f"{result.ok} successful requests < min_requests {p.min_requests}")
        if exceeded:
            raise PermanentError(f"load test of {target} failed: " + "; ".join(exceeded)
                                 + f" ({result.requests} requests in {result.elapsed_s:.1f}s)")

    def report(self) -> dict[str, Any]:
        return self._report
