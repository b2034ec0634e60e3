"""Phase 4 validations: validate.smoke and validate.monitoring (HTTP), and the pieces every validate.* shares.

A validation changes nothing: `check` says done, `apply` and `rollback` do nothing, and `verify` is the
gate. Its figures go to `report()` (the state and the rehearsal report) and to the journal. The security
and load validations live in validate_security.py and validate_load.py.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import Field, model_validator

from migrator.adapters import resources
from migrator.adapters.loadtest import connect, tls_context
from migrator.errors import GateNotReady, PermanentError
from migrator.steps.base import ReadOnlyStep, StepContext, StrictModel, step_type

P = TypeVar("P", bound=StrictModel)
Scheme = Literal["http", "https"]
MAX_PARALLEL = 8  # smoke requests in flight at once


class Validation(ReadOnlyStep[P]):
    """Base of validate.*: the effect of a validation is nothing, so it is always 'in place'."""

    in_place = "a validation changes nothing; its gate is the test"


# -- HTTP through an address with a Host header --------------------------------------------------------
class Endpoint(StrictModel):
    """Where to send requests: an address (the ingress by default) with the public name as Host header."""

    address: str | None = None  # default: environment.target.ingress_address
    port: int | None = Field(default=None, ge=1, le=65535)  # default: ingress_port, or 443/80
    scheme: Scheme | None = None  # default: environment.target.ingress_scheme, or https
    tls_verify: bool = True  # rehearsals with a self-signed CA: prefer ca_file
    ca_file: str | None = None  # relative to the runbook
    timeout_s: float = Field(default=5, gt=0, le=120)


@dataclass(frozen=True)
class Target:
    address: str
    port: int
    scheme: Scheme

    def __str__(self) -> str:
        return f"{self.scheme}://{self.address}:{self.port}"


def resolve_target(ctx: StepContext, ep: Endpoint) -> Target:
    env = ctx.runbook.environment.target
    address = ep.address or (env.ingress_address if env else None)
    if not address:
        raise PermanentError(f"{ctx.step_id}: give `address:` or set environment.target.ingress_address")
    scheme: Scheme = ep.scheme or (env.ingress_scheme if env else "https")
    port = ep.port
    if port is None:
        port = env.ingress_port if env and address == env.ingress_address else (443 if scheme == "https" else 80)
    return Target(address, port, scheme)


@dataclass
class Fetched:
    status: int | None
    ms: float
    body: bytes
    error: str | None = None


def fetch(ctx: StepContext, ep: Endpoint, target: Target, path: str, host: str | None) -> Fetched:
    """One GET; connection trouble comes back as `error`, never raised."""
    tls = None
    if target.scheme == "https":
        tls = tls_context(ep.tls_verify, str(ctx.path(ep.ca_file)) if ep.ca_file else None)
    start = time.perf_counter()
    conn = connect(target.address, target.port, timeout=ep.timeout_s, tls=tls, server_name=host)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        resp = conn.getresponse()
        body = resp.read(1 << 20)
        return Fetched(resp.status, (time.perf_counter() - start) * 1000, body)
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else f"{exc.__class__.__name__}: {exc.strerror or exc}"
        return Fetched(None, (time.perf_counter() - start) * 1000, b"", why)
    except Exception as exc:  # http.client.HTTPException and the like: a broken answer, not a crash
        return Fetched(None, (time.perf_counter() - start) * 1000, b"", f"{exc.__class__.__name__}: {exc}")
    finally:
        conn.close()


def body_hint(body: bytes, limit: int = 100) -> str:
    """A short reason from an error body: its JSON `error`/`message`, else its first characters."""
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and (doc.get("error") or doc.get("message")):
            text = str(doc.get("error") or doc.get("message"))
    except ValueError:
        pass
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


# -- validate.smoke ---------------------------------------------------------------------------------------
class SmokeParams(Endpoint):
    hosts: list[str] = Field(default_factory=list, max_length=500)
    domain: str | None = None
    names: list[str] = Field(default_factory=list, max_length=500)  # "@" is the domain itself
    paths: list[str] = Field(default_factory=lambda: ["/health"], min_length=1, max_length=20)
    # Paths for particular hosts instead of `paths` (a name under `domain`, or a full host name): OpenBao,
    # Grafana, Prometheus... have their own health endpoints.
    host_paths: dict[str, list[str]] = Field(default_factory=dict, max_length=500)
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    expect_body: str | None = None  # a substring every answer must contain

    @model_validator(mode="after")
    def _some_hosts(self) -> SmokeParams:
        if self.names and not self.domain:
            raise ValueError("`names` needs `domain`")
        if not self.hosts and not self.names:
            raise ValueError("give `hosts:` or `domain:` + `names:`")
        if any(not p.startswith("/") for p in [*self.paths, *(q for v in self.host_paths.values() for q in v)]):
            raise ValueError("every path starts with /")
        if any(not v for v in self.host_paths.values()):
            raise ValueError("host_paths: each host needs at least one path")
        unknown = sorted(set(self._host_paths()) - set(self.all_hosts()))
        if unknown:
            raise ValueError(f"host_paths: {', '.join(unknown)} not among the hosts checked")
        return self

    def _fqdn(self, name: str) -> str:
        name = name.lower().rstrip(".")
        if not self.domain:
            return name
        domain = self.domain.lower().rstrip(".")
        if name in ("@", ""):
            return domain
        return name if name == domain or name.endswith("." + domain) else f"{name}.{domain}"

    def _host_paths(self) -> dict[str, list[str]]:
        return {self._fqdn(k): v for k, v in self.host_paths.items()}

    def all_hosts(self) -> list[str]:
        named = [self.domain if n in ("@", "") else f"{n}.{self.domain}" for n in self.names]
        return list(dict.fromkeys(h.lower().rstrip(".") for h in [*self.hosts, *named] if h))

    def pairs(self) -> list[tuple[str, str]]:
        """(host, path) for every check."""
        special = self._host_paths()
        return [(h, path) for h in self.all_hosts() for path in special.get(h, self.paths)]


@step_type("validate.smoke")
class Smoke(Validation[SmokeParams]):
    """GET each path of each public hostname through the ingress address, with the name as Host header."""

    description = "HTTP smoke test of every public hostname through the ingress"

    def __init__(self, ctx: StepContext, params: SmokeParams) -> None:
        super().__init__(ctx, params)
        self._report: dict[str, Any] = {}

    def verify(self) -> None:
        p = self.params
        target = resolve_target(self.ctx, p)
        pairs = p.pairs()
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(pairs))) as pool:
            answers = list(pool.map(lambda hp: fetch(self.ctx, p, target, hp[1], hp[0]), pairs))
        hosts: dict[str, dict[str, Any]] = {}
        failures: list[str] = []
        for (host, path), got in zip(pairs, answers, strict=True):
            problem = self._problem(got)
            entry: dict[str, Any] = {"status": got.status, "ms": round(got.ms, 1)}
            if problem:
                entry["error"] = problem
                failures.append(f"{host}{path}: {problem}")
            hosts.setdefault(host, {})[path] = entry
        failed_hosts = sorted({f.split("/", 1)[0] for f in failures})
        self._report = {"through": str(target), "hosts_checked": len(hosts), "hosts_failed": len(failed_hosts),
                        "hosts": hosts}
        self.ctx.journal("validate-smoke", through=str(target), hosts_checked=len(hosts),
                failed=failed_hosts, hosts=hosts)
        if failures:
            raise GateNotReady(f"{len(failed_hosts)} of {len(hosts)} hosts failed through {target}: "
                               + "; ".join(failures[:20]) + (f"; and {len(failures) - 20} more" if len(failures) > 20 else ""))

    def _problem(self, got: Fetched) -> str | None:
        p = self.params
        if got.error:
            return got.error
        if got.status not in p.expect_status:
            hint = body_hint(got.body)
            return f"status {got.status}, expected {p.expect_status}" + (f" ({hint})" if hint else "")
        if p.expect_body is not None and p.expect_body not in got.body.decode("utf-8", "replace"):
            return f"body does not contain {p.expect_body!r}"
        return None

    def report(self) -> dict[str, Any]:
        return self._report


# -- validate.monitoring ----------------------------------------------------------------------------------
class MonitoringParams(Endpoint):
    url: str | None = None  # Prometheus base URL, e.g. http://127.0.0.1:9090 (instead of address + host)
    host: str | None = None  # Host header when reaching Prometheus through an address (the ingress)
    expect_jobs: list[str] = Field(default_factory=list)
    ignore_jobs: list[str] = Field(default_factory=list)  # jobs whose down targets do not fail the gate
    min_targets: int = Field(default=1, ge=0)
    # The namespaces whose deployed objects declare what Prometheus must scrape: every Pod not finished, and
    # every Service, annotated `prometheus.io/scrape: "true"` must be an active target that is up.
    declared_in: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _where(self) -> MonitoringParams:
        if self.url and (self.address or self.host or self.port or self.scheme):
            raise ValueError("give either `url:` or `address:`/`port:`/`scheme:`/`host:`, not both")
        if not self.url and not self.host:
            raise ValueError("give `url:` (Prometheus directly) or `host:` (its public name, through `address:`)")
        return self


@step_type("validate.monitoring")
class Monitoring(Validation[MonitoringParams]):
    """Prometheus's /api/v1/targets: every active target up, every expected job present, and (declared_in)
    every Pod and Service that declares prometheus.io/scrape among the targets."""

    description = "every Prometheus target is up"

    def __init__(self, ctx: StepContext, params: MonitoringParams) -> None:
        super().__init__(ctx, params)
        self._report: dict[str, Any] = {}

    def _where(self) -> tuple[Target, str, str | None]:
        p = self.params
        if p.url:
            u = urllib.parse.urlsplit(p.url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise PermanentError(f"{self.ctx.step_id}.url: {p.url!r} is not an http(s) URL")
            scheme: Scheme = "https" if u.scheme == "https" else "http"
            base = u.path.rstrip("/")
            path = base if base.endswith("/api/v1/targets") else base + "/api/v1/targets"
            return Target(u.hostname, u.port or (443 if scheme == "https" else 80), scheme), path, None
        return resolve_target(self.ctx, p), "/api/v1/targets", p.host

    def verify(self) -> None:
        target, path, host = self._where()
        where = f"{target}{path}" + (f" (Host {host})" if host else "")
        got = fetch(self.ctx, self.params, target, path + "?state=active", host)
        if got.error or got.status != 200:
            raise GateNotReady(f"Prometheus at {where}: {got.error or f'status {got.status} ({body_hint(got.body)})'}")
        try:
            doc = json.loads(got.body)
            status = doc["status"]
            active = doc["data"]["activeTargets"] if status == "success" else []
            if not isinstance(active, list):
                raise TypeError("activeTargets is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise GateNotReady(f"Prometheus at {where}: not a targets answer ({exc.__class__.__name__})") from None
        if status != "success":
            raise GateNotReady(f"Prometheus at {where}: status {status!r}: {body_hint(got.body)}")
        self._judge(where, [t for t in active if isinstance(t, dict)], self._declared())

    def _declared(self) -> list[tuple[str, str, str]]:
        """(kind, namespace, name) of every Pod (not finished) and Service annotated prometheus.io/scrape=true."""
        if not self.params.declared_in:
            return []

        kube = resources.kube(self.ctx.resource, self.ctx.runbook)
        out = []
        for ns in self.params.declared_in:
            for kind in ("Pod", "Service"):
                for obj in kube.list_objects(kind, ns):
                    meta = obj.get("metadata") or {}
                    if str((meta.get("annotations") or {}).get("prometheus.io/scrape", "")).lower() != "true":
                        continue
                    if kind == "Pod" and (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                        continue  # a finished pod (a Job's) is not a scrape target; a pending one should be
                    out.append((kind, ns, str(meta.get("name"))))
        return out

    @staticmethod
    def _scrapes(target: dict[str, Any], kind: str, ns: str, name: str) -> bool:
        found = target.get("discoveredLabels") or {}
        key = "__meta_kubernetes_pod_name" if kind == "Pod" else "__meta_kubernetes_service_name"
        return bool(found.get("__meta_kubernetes_namespace") == ns and found.get(key) == name)

    def _judge(self, where: str, active: list[dict[str, Any]], declared: list[tuple[str, str, str]] | None = None) -> None:
        p = self.params
        declared = declared or []
        unscraped = [f"{kind} {ns}/{name} declares prometheus.io/scrape but Prometheus has no target for it"
                     for kind, ns, name in declared if not any(self._scrapes(t, kind, ns, name) for t in active)]
        jobs: dict[str, dict[str, int]] = {}
        down: list[str] = []
        for t in active:
            labels = t.get("labels") or {}
            job = str(labels.get("job") or t.get("scrapePool") or "?")
            instance = str(labels.get("instance") or (t.get("discoveredLabels") or {}).get("__address__") or "?")
            health = str(t.get("health") or "unknown")
            counts = jobs.setdefault(job, {"up": 0, "down": 0})
            counts["up" if health == "up" else "down"] += 1
            if health != "up" and job not in p.ignore_jobs:
                err = str(t.get("lastError") or "")
                down.append(f"{job}/{instance} is {health}" + (f" ({err[:120]})" if err else ""))
        missing = [j for j in p.expect_jobs if j not in jobs]
        self._report = {"prometheus": where, "targets": len(active),
                        "up": sum(c["up"] for c in jobs.values()), "down": sum(c["down"] for c in jobs.values()),
                        "jobs": jobs, "declared": len(declared), "declared_unscraped": len(unscraped)}
        self.ctx.journal("validate-monitoring", prometheus=where, targets=len(active), down=down, missing=missing,
                         declared=len(declared), unscraped=unscraped)
        problems = down + [f"job {j} has no target" for j in missing] + unscraped
        if len(active) < p.min_targets:
            problems.append(f"{len(active)} active targets, expected at least {p.min_targets}")
        if problems:
            raise GateNotReady(f"Prometheus at {where}: " + "; ".join(problems[:30])
                               + (f"; and {len(problems) - 30} more" if len(problems) > 30 else ""))

    def report(self) -> dict[str, Any]:
        return self._report
