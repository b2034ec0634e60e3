"""DNS providers: read record sets, apply change sets guarded by prerequisites, find the authoritative servers.

`DNSProvider` is the interface the dns steps use; `Rfc2136Provider` implements it with TSIG-signed
dynamic updates (dnspython), `dns_lexicon.LexiconProvider` with a registrar's HTTP API (TransIP,
Cloudflare). Verification stays plain DNS (`query_server`) on every authoritative server, whoever the
provider is.
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.adapters.lazy import lazy
from migrator.errors import PermanentError, TemporaryError
from migrator.runbook.environment import DNSConfig, HostPort
from migrator.runbook.tsig import TSIGKeyError, resolve

if TYPE_CHECKING:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdataset
    import dns.rdatatype
    import dns.resolver
    import dns.tsig
    import dns.tsigkeyring
    import dns.update
else:
    dns = lazy("dns")  # its submodules on first use: dns.query, dns.update, ...

# The name of dnspython's constant (dns.tsig.HMAC_SHA256, ...) for each algorithm a key may name.
TSIG_ALGORITHMS = {
    "hmac-sha256": "HMAC_SHA256",
    "hmac-sha512": "HMAC_SHA512",
    "hmac-sha384": "HMAC_SHA384",
    "hmac-sha224": "HMAC_SHA224",
    "hmac-sha1": "HMAC_SHA1",
    "hmac-md5": "HMAC_MD5",
}


def absolute(name: str, zone: str) -> str:
    """`rentguy`, `rentguy.sevensa.test` or `rentguy.sevensa.test.` -> `rentguy.sevensa.test.`; `@` is the apex."""
    zone, name = zone.rstrip(".").lower(), name.lower()
    if name in ("@", "", zone, zone + "."):
        return zone + "."
    if name.endswith("."):
        return name
    if name.endswith("." + zone):
        return name + "."
    return f"{name}.{zone}."


@dataclass(frozen=True)
class RRSet:
    """One record set as the migrator records it: absolute name, type, TTL and sorted rdata texts."""

    name: str
    rtype: str
    ttl: int
    rdatas: tuple[str, ...]

    @classmethod
    def make(cls, name: str, rtype: str, ttl: int, rdatas: Sequence[str]) -> RRSet:
        return cls(name, rtype.upper(), int(ttl), tuple(sorted(_canonical(rtype, r) for r in rdatas)))

    @property
    def key(self) -> str:
        return key_of(self.name, self.rtype)

    def to_fact(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.rtype, "ttl": self.ttl, "rdatas": list(self.rdatas)}

    @classmethod
    def from_fact(cls, fact: dict[str, Any]) -> RRSet:
        return cls.make(fact["name"], fact["type"], fact["ttl"], fact["rdatas"])

    def with_ttl(self, ttl: int) -> RRSet:
        return RRSet(self.name, self.rtype, int(ttl), self.rdatas)

    def same_data(self, other: RRSet | None) -> bool:
        """Equal records, TTL aside (RFC 2136 prerequisites compare the same way)."""
        return other is not None and other.rdatas == self.rdatas

    def describe(self) -> str:
        return f"{self.ttl} {self.rtype} {' '.join(self.rdatas)}"


def key_of(name: str, rtype: str) -> str:
    return f"{name}|{rtype.upper()}"


def split_key(key: str) -> tuple[str, str]:
    name, rtype = key.rsplit("|", 1)
    return name, rtype


def same(a: RRSet | None, b: RRSet | None) -> bool:
    """Same records (TTL aside), absence included."""
    return (a is None and b is None) or (a is not None and a.same_data(b))


def show(rrset: RRSet | None) -> str:
    return rrset.describe() if rrset is not None else "(absent)"


def _canonical(rtype: str, text: str) -> str:
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), text, dns.name.root,
                             relativize=False)
    return str(rd.to_text())


@dataclass(frozen=True)
class Server:
    name: str  # the NS name, or a label for a resolver
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.name} ({self.host}:{self.port})"


@dataclass(frozen=True)
class Change:
    """Make NAME/TYPE hold `new` (None: delete it), provided it still holds `expect` (None: absent).

    With `new == expect` the change is a prerequisite only: nothing is written for it."""

    name: str
    rtype: str
    expect: RRSet | None
    new: RRSet | None

    @property
    def key(self) -> str:
        return key_of(self.name, self.rtype)

    @property
    def writes(self) -> bool:
        return self.expect != self.new  # a TTL change alone is a write too


class ConflictError(PermanentError):
    """A prerequisite failed: a record no longer holds what the migrator saw. Nothing was written."""


class DNSProvider(ABC):
    """What the dns steps need from a DNS service."""

    zone: str

    @abstractmethod
    def read(self, name: str, rtype: str) -> RRSet | None:
        """The record set as the zone's master copy holds it now, or None."""

    @abstractmethod
    def apply(self, changes: Sequence[Change]) -> None:
        """Apply all changes at once if every `expect` still holds; ConflictError (nothing written) if not."""

    @abstractmethod
    def authoritative_servers(self) -> list[Server]:
        """Every server the zone's NS records name, with the address to ask it at."""

    def close(self) -> None:  # noqa: B027 - optional hook: the engine closes shared resources at the end
        """Release connections, if any."""


class Rfc2136Provider(DNSProvider):
    """Dynamic updates (RFC 2136) signed with TSIG, sent over TCP to the zone's primary."""

    def __init__(self, config: DNSConfig, key_secret: Callable[[], str]) -> None:
        assert config.primary is not None and config.tsig is not None  # DNSConfig checks: provider rfc2136
        self.config = config
        self.tsig = config.tsig
        self.zone = config.zone.rstrip(".") + "."
        self.primary = Server("primary", config.primary.host, config.primary.port)
        self._key_secret = key_secret  # called only when an update is signed: reads need no key

    # -- reading -----------------------------------------------------------------------------------
    def read(self, name: str, rtype: str) -> RRSet | None:
        return query_server(self.primary, name, rtype, tcp=True, timeout=self.config.timeout_s)

    def authoritative_servers(self) -> list[Server]:
        return authoritative_from_config(self.config, self.zone, ask=self.primary)

    # -- writing -----------------------------------------------------------------------------------
    def _message(self) -> dns.update.UpdateMessage:
        tsig = self.tsig
        try:
            name, secret = resolve(self._key_secret(), tsig.name, tsig.algorithm)
        except TSIGKeyError as exc:
            raise PermanentError(f"environment.dns.tsig.secret: secret {tsig.secret!r}: {exc}") from None
        algorithm = getattr(dns.tsig, TSIG_ALGORITHMS[name])
        try:
            keyring = dns.tsigkeyring.from_text({tsig.name: secret})
        except (ValueError, TypeError, dns.exception.DNSException):
            raise PermanentError(f"environment.dns.tsig: the secret {tsig.secret!r} is not a base64 TSIG key") from None
        return dns.update.UpdateMessage(self.zone, keyring=keyring, keyname=dns.name.from_text(tsig.name),
                                         keyalgorithm=algorithm)

    def apply(self, changes: Sequence[Change]) -> None:
        if not any(c.writes for c in changes):
            return
        msg = self._message()
        for c in changes:
            if c.expect is None:
                msg.absent(c.name, c.rtype)
            else:
                msg.present(c.name, _rdataset(c.expect.with_ttl(0)))  # prerequisites carry TTL 0 (RFC 2136 2.4)
        writing = [c for c in changes if c.writes]
        for c in writing:  # every delete before any add: a CNAME may not join other data at its name
            if c.expect is not None:
                msg.delete(c.name, c.rtype)
        for c in writing:
            if c.new is not None:
                msg.add(c.name, _rdataset(c.new))
        response = self._send(msg)
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        if rcode in (dns.rcode.YXRRSET, dns.rcode.NXRRSET, dns.rcode.YXDOMAIN, dns.rcode.NXDOMAIN):
            raise ConflictError(f"{self.primary}: {dns.rcode.to_text(rcode)}: a record changed since it was read")
        raise _rcode_error(rcode, self.primary, f"the update of {self.zone}", self.tsig.name)

    def _send(self, msg: dns.update.UpdateMessage) -> dns.message.Message:
        p = self.primary
        try:
            return dns.query.tcp(msg, p.host, port=p.port, timeout=self.config.timeout_s)
        except (dns.tsig.PeerBadSignature, dns.tsig.PeerBadKey, dns.tsig.PeerBadTime, dns.tsig.PeerBadTruncation) as exc:
            why = {dns.tsig.PeerBadSignature: "BADSIG", dns.tsig.PeerBadKey: "BADKEY",
                   dns.tsig.PeerBadTime: "BADTIME"}.get(type(exc), "TSIG error")
            raise PermanentError(f"TSIG key {self.tsig.name} rejected by {p} ({why}): "
                                 "check environment.dns.tsig") from None
        except dns.tsig.BadSignature:
            raise PermanentError(f"the response of {p} failed TSIG validation: check environment.dns.tsig") from None
        except dns.exception.Timeout:
            raise TemporaryError(f"{p}: no answer to the update within {self.config.timeout_s:g}s") from None
        except OSError as exc:
            raise TemporaryError(f"{p}: {exc.strerror or exc}") from None


def _rdataset(rrset: RRSet) -> dns.rdataset.Rdataset:
    return dns.rdataset.from_text_list(dns.rdataclass.IN, dns.rdatatype.from_text(rrset.rtype), rrset.ttl,
                                       list(rrset.rdatas))


def _rcode_error(rcode: int, server: Server, what: str, key: str | None = None) -> Exception:
    text = dns.rcode.to_text(rcode)  # type: ignore[arg-type]
    if rcode == dns.rcode.NOTAUTH and key:
        return PermanentError(f"TSIG key {key} rejected by {server} (NOTAUTH): check environment.dns.tsig")
    if rcode == dns.rcode.REFUSED:
        return PermanentError(f"{server} REFUSED {what}: check that it serves the zone and that the key may update "
                              "these names (update-policy)")
    if rcode == dns.rcode.NOTZONE or rcode == dns.rcode.NOTAUTH:
        return PermanentError(f"{server} is not authoritative for {what} ({text}): check environment.dns.zone")
    if rcode == dns.rcode.SERVFAIL:
        return TemporaryError(f"{server}: SERVFAIL for {what}")
    return PermanentError(f"{server}: {text} for {what}")


def query_server(server: Server, name: str, rtype: str, *, tcp: bool, timeout: float,
                 recursive: bool = False) -> RRSet | None:
    """Ask one server directly for NAME/TYPE. None when absent; TemporaryError when it does not answer.

    Without `recursive`, the answer must be authoritative (AA): a server that lost the zone is a fault."""
    q = dns.message.make_query(name, rtype)
    if not recursive:
        q.flags &= ~dns.flags.RD
    proto = "TCP" if tcp else "UDP"
    try:
        if tcp:
            r = dns.query.tcp(q, server.host, port=server.port, timeout=timeout)
        else:
            r = dns.query.udp(q, server.host, port=server.port, timeout=timeout)
    except dns.exception.Timeout:
        raise TemporaryError(f"{server} did not answer {name} {rtype} over {proto} within {timeout:g}s") from None
    except (OSError, dns.exception.DNSException) as exc:
        raise TemporaryError(f"{server}: {name} {rtype} over {proto}: {exc.__class__.__name__}: {exc}") from None
    rcode = r.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        err = _rcode_error(rcode, server, f"{name} {rtype} over {proto}")
        raise err if isinstance(err, TemporaryError) or recursive else TemporaryError(str(err))
    if not recursive and not r.flags & dns.flags.AA:
        raise TemporaryError(f"{server} is not authoritative for {name} (over {proto}): is the zone loaded there?")
    want = dns.name.from_text(name)
    for rrset in r.answer:
        if rrset.name == want and rrset.rdtype == dns.rdatatype.from_text(rtype):
            return RRSet.make(name, rtype, rrset.ttl, [rd.to_text() for rd in rrset])
    return None


def authoritative_from_config(config: DNSConfig, zone: str, ask: Server | None = None) -> list[Server]:
    """Every server the zone's NS records name, with the address to ask it at.

    The NS set comes from `ask` (RFC 2136: the primary), else from the first of environment.dns.nameservers
    that answers with authority (an HTTP API provider's own servers), else from the system resolver."""
    mapped = {k.rstrip(".").lower(): v for k, v in config.nameservers.items()}
    askable = [ask] if ask else [Server(n, hp.host, hp.port) for n, hp in config.nameservers.items()]
    ns: RRSet | None = None
    errors: list[str] = []
    for server in askable:
        try:
            ns = query_server(server, zone, "NS", tcp=True, timeout=config.timeout_s)
        except TemporaryError as exc:
            errors.append(str(exc))
            continue
        if ns is None:
            raise PermanentError(f"zone {zone}: no NS records at {server}")
        break
    if ns is None and askable:
        raise TemporaryError(f"zone {zone}: no authoritative server answered for its NS records: {'; '.join(errors)}")
    if ns is None:
        ns = _resolve_ns(zone, config.timeout_s)
    return [_locate(n, mapped.get(n.rstrip(".").lower())) for n in ns.rdatas]


def _resolve_ns(zone: str, timeout: float) -> RRSet:
    try:
        answer = dns.resolver.resolve(zone, "NS", lifetime=timeout)
    except dns.exception.DNSException as exc:
        raise TemporaryError(f"zone {zone}: cannot resolve its NS records ({exc.__class__.__name__}); list its "
                             "servers in environment.dns.nameservers") from None
    return RRSet.make(zone, "NS", int(answer.rrset.ttl) if answer.rrset else 0, [rd.to_text() for rd in answer])


def _locate(ns_name: str, where: HostPort | None) -> Server:
    if where is not None:
        return Server(ns_name, where.host, where.port)
    try:  # not mapped: the NS name's own address, port 53
        info = socket.getaddrinfo(ns_name, 53, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise TemporaryError(f"cannot resolve NS {ns_name}: {exc}; map it in environment.dns.nameservers") from None
    return Server(ns_name, str(info[0][4][0]), 53)


def provider_for(config: DNSConfig, secret: Callable[[str], str], path: Callable[[str], Path]) -> DNSProvider:
    """The provider named by environment.dns.provider; `secret` resolves a runbook secret by name, `path` a
    file name relative to the runbook."""
    if config.provider == "rfc2136":
        tsig = config.tsig
        assert tsig is not None
        return Rfc2136Provider(config, lambda: secret(tsig.secret))
    from migrator.adapters.dns_lexicon import LexiconProvider  # imports this module; lexicon is heavy

    return LexiconProvider(config, secret, path)
