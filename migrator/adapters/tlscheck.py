"""One TLS handshake to an address, presenting a host name (SNI), verified as a browser would: the chain
against a CA bundle (the runbook's, or the system's), the name against the certificate, the dates.

Stdlib ssl only. A failure comes back as a short reason (`Handshake.error`), never raised: the gate
collects one line per host.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Handshake:
    host: str
    error: str | None = None
    not_after: float | None = None  # epoch seconds
    issuer: str | None = None
    names: tuple[str, ...] = ()

    def days_left(self, now: float | None = None) -> float | None:
        if self.not_after is None:
            return None
        return (self.not_after - (time.time() if now is None else now)) / 86400


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted for this name: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc.__class__.__name__}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, OSError):
        return f"{exc.__class__.__name__}: {exc.strerror or exc}"
    return f"{exc.__class__.__name__}: {exc}"


def _issuer(cert: dict[str, object]) -> str:
    parts = []
    for rdn in cert.get("issuer") or ():  # type: ignore[attr-defined]
        for key, value in rdn:
            if key in ("commonName", "organizationName"):
                parts.append(str(value))
    return ", ".join(parts)


def handshake(address: str, port: int, host: str, *, ca_file: str | None, timeout: float) -> Handshake:
    """Connect to address:port, send SNI `host`, verify chain and name; report the leaf's expiry."""
    context = ssl.create_default_context(cafile=ca_file)  # CERT_REQUIRED, check_hostname, system CAs if None
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            cert = tls.getpeercert()
    except (OSError, ssl.SSLError) as exc:
        return Handshake(host, error=_reason(exc))
    if not cert:
        return Handshake(host, error="no certificate presented")
    sans: tuple[tuple[str, str], ...] = cert.get("subjectAltName", ())  # type: ignore[assignment]
    names = tuple(str(v) for k, v in sans if k in ("DNS", "IP Address"))
    not_after = ssl.cert_time_to_seconds(str(cert["notAfter"])) if cert.get("notAfter") else None
    return Handshake(host, not_after=not_after, issuer=_issuer(cert), names=names)  # type: ignore[arg-type]
