"""The bounded load generator behind `validate.load`: threads with keep-alive http.client connections.

Loopback only (127.0.0.0/8) unless the spec says `allow_remote` (a runbook's explicit choice, with the
tighter REMOTE_* bounds and a rate): the address is checked before any socket is opened, and is always an
IP literal (never resolved). Every run is bounded in request count and in time: no request starts after
`duration_s`, and each in-flight request gets a socket timeout that ends at most `GRACE_S` after that, so a
run lasts at most `duration_s + GRACE_S` (+ joins). With `rate`, request n starts no earlier than n/rate
seconds into the run.
Stdlib only, so it also serves the smoke and monitoring checks (`connect`, `tls_context`).
"""

from __future__ import annotations

import dataclasses
import http.client
import ipaddress
import math
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

GRACE_S = 1.0  # how long in-flight requests may run past duration_s
MAX_REQUESTS = 100_000
MAX_DURATION_S = 600.0
MAX_CONCURRENCY = 64
# A target that is not loopback (the production ingress): a smaller, paced load, never a stress test.
REMOTE_MAX_REQUESTS = 10_000
REMOTE_MAX_DURATION_S = 120.0
REMOTE_MAX_CONCURRENCY = 16
REMOTE_MAX_RATE = 200.0  # requests per second


class NotLoopback(ValueError):
    """The target is not on 127.0.0.0/8: no traffic is sent."""


def loopback_ip(host: str) -> str:
    """The IPv4 loopback address for `host` ('localhost' or a 127.x.y.z literal); NotLoopback otherwise.

    No name resolution: a DNS answer could point anywhere, so only literals (and 'localhost') count."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        raise NotLoopback(f"{host!r} is not an IPv4 loopback address (127.0.0.0/8); names are not resolved") from None
    if ip.version != 4 or not ip.is_loopback:
        raise NotLoopback(f"{host} is outside 127.0.0.0/8; load tests only target loopback")
    return str(ip)


def remote_ip(host: str) -> str:
    """An IP literal (any address); names are not resolved, so the target is exactly what the runbook says."""
    name = host.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        raise NotLoopback(f"{host!r} is not an IP address; names are not resolved") from None


def tls_context(verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
    """Verifying by default (system CAs, or `ca_file`); turned off only by a rehearsal runbook's tls_verify: false."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _HTTPSTo(http.client.HTTPSConnection):
    """HTTPS to an address while presenting (SNI) and verifying another name: the public hostname."""

    def __init__(self, address: str, port: int, server_name: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self._tls = context
        self._server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)


def connect(address: str, port: int, *, timeout: float, tls: ssl.SSLContext | None = None,
            server_name: str | None = None) -> http.client.HTTPConnection:
    """A connection to address:port; with `tls`, HTTPS presenting `server_name` (default: the address)."""
    if tls is None:
        return http.client.HTTPConnection(address, port, timeout=timeout)
    return _HTTPSTo(address, port, server_name or address, tls, timeout)


@dataclass(frozen=True)
class LoadSpec:
    address: str
    port: int
    path: str = "/"
    host_header: str | None = None
    requests: int = 500  # at most this many requests
    duration_s: float = 10.0  # no request starts after this
    concurrency: int = 8
    timeout_s: float = 5.0  # per request
    expect_status: tuple[int, ...] = (200,)
    tls: ssl.SSLContext | None = None
    rate: float | None = None  # requests per second at most (None: as fast as the workers go)
    allow_remote: bool = False  # a non-loopback address, within the REMOTE_* bounds and with a rate


@dataclass
class LoadResult:
    requests: int = 0  # attempted
    ok: int = 0
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # every response received, any status
    elapsed_s: float = 0.0
    stopped_by: str = ""  # "requests" or "duration"

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile of the response latencies, in ms (None without responses)."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value, 2)

        return {
            "requests": self.requests, "ok": self.ok, "errors": self.errors,
            "error_rate": round(self.error_rate, 4), "error_kinds": dict(self.error_kinds.most_common(5)),
            "p50_ms": ms(self.percentile(50)), "p95_ms": ms(self.percentile(95)), "p99_ms": ms(self.percentile(99)),
            "max_ms": ms(max(self.latencies_ms) if self.latencies_ms else None),
            "rps": round(self.rps, 1), "seconds": round(self.elapsed_s, 3), "stopped_by": self.stopped_by,
        }


class _Run:
    """Shared budget of one run: hands out request slots until the count or the time runs out."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.deadline = self.started + spec.duration_s
        self.result = LoadResult()

    def take(self) -> bool:
        with self.lock:
            if self.stop.is_set():
                return False
            if self.result.requests >= self.spec.requests:
                self.result.stopped_by = self.result.stopped_by or "requests"
                return False
            n = self.result.requests
            self.result.requests += 1  # the slot is ours; given back below if the time runs out first
        if self.spec.rate:
            not_before = self.started + n / self.spec.rate
            while (wait := not_before - time.monotonic()) > 0 and not self.stop.is_set():
                self.stop.wait(min(wait, max(0.0, self.deadline - time.monotonic()) + 0.001))
                if time.monotonic() >= self.deadline:
                    break
        with self.lock:
            if self.stop.is_set() or time.monotonic() >= self.deadline:
                self.result.requests -= 1
                self.result.stopped_by = self.result.stopped_by or "duration"
                return False
            return True

    def done(self, latency_ms: float | None, error: str | None) -> None:
        with self.lock:
            if latency_ms is not None:
                self.result.latencies_ms.append(latency_ms)
            if error is None:
                self.result.ok += 1
            else:
                self.result.errors += 1
                self.result.error_kinds[error] += 1


def _worker(run: _Run) -> None:
    spec = run.spec
    headers = {"Host": spec.host_header} if spec.host_header else {}
    conn: http.client.HTTPConnection | None = None
    try:
        while run.take():
            # The socket timeout also ends the request at most GRACE_S after the run's deadline.
            timeout = max(0.05, min(spec.timeout_s, run.deadline + GRACE_S - time.monotonic()))
            if conn is None:
                conn = connect(spec.address, spec.port, timeout=timeout, tls=spec.tls, server_name=spec.host_header)
            elif conn.sock is not None:
                conn.sock.settimeout(timeout)
            else:
                conn.timeout = timeout
            start = time.perf_counter()
            try:
                conn.request("GET", spec.path, headers=headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = None
                kind = "timeout" if isinstance(exc, TimeoutError | socket.timeout) else exc.__class__.__name__
                run.done(None, kind)
                continue
            latency = (time.perf_counter() - start) * 1000
            run.done(latency, None if resp.status in spec.expect_status else f"status {resp.status}")
            if resp.will_close:
                conn.close()
                conn = None
    finally:
        if conn is not None:
            conn.close()


def check_bounds(spec: LoadSpec) -> None:
    """ValueError naming the bound a spec exceeds (the remote ones when `allow_remote`)."""
    if spec.allow_remote:
        limits = (REMOTE_MAX_REQUESTS, REMOTE_MAX_DURATION_S, REMOTE_MAX_CONCURRENCY)
        if spec.rate is None or not 0 < spec.rate <= REMOTE_MAX_RATE:
            raise ValueError(f"a remote load test needs a rate of at most {REMOTE_MAX_RATE:g} requests/s")
    else:
        limits = (MAX_REQUESTS, MAX_DURATION_S, MAX_CONCURRENCY)
        if spec.rate is not None and spec.rate <= 0:
            raise ValueError("rate must be above 0")
    max_requests, max_duration, max_concurrency = limits
    if not (1 <= spec.requests <= max_requests and 0 < spec.duration_s <= max_duration
            and 1 <= spec.concurrency <= max_concurrency and spec.timeout_s > 0):
        where = "a remote target" if spec.allow_remote else "loopback"
        raise ValueError(f"load bounds out of range for {where}: requests 1..{max_requests}, duration_s "
                         f"0..{max_duration:g}, concurrency 1..{max_concurrency}")


def run_load(spec: LoadSpec) -> LoadResult:
    """Run the load test described by `spec`; NotLoopback (before any traffic) for a non-loopback address
    without `allow_remote`, ValueError for bounds out of range."""
    check_bounds(spec)
    address = remote_ip(spec.address) if spec.allow_remote else loopback_ip(spec.address)
    run = _Run(dataclasses.replace(spec, address=address))
    threads = [threading.Thread(target=_worker, args=(run,), name=f"load-{i}", daemon=True)
               for i in range(min(spec.concurrency, spec.requests))]
    for t in threads:
        t.start()
    hard_stop = run.deadline + GRACE_S + spec.timeout_s  # workers never outlive this
    try:
        for t in threads:
            t.join(max(0.0, hard_stop - time.monotonic()))
    except KeyboardInterrupt:
        run.stop.set()
        for t in threads:
            t.join(GRACE_S)
        raise
    run.stop.set()
    with run.lock:  # a snapshot: a worker past its join timeout must not change what we report
        result = dataclasses.replace(run.result, error_kinds=Counter(run.result.error_kinds),
                                     latencies_ms=list(run.result.latencies_ms))
    result.elapsed_s = time.monotonic() - run.started
    if not result.stopped_by:
        result.stopped_by = "requests" if result.requests >= spec.requests else "duration"
    return result
