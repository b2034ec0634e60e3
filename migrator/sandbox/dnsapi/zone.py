"""The zone behind an HTTP DNS API stand-in: the real BIND primary, read by TSIG-signed AXFR and written by
TSIG-signed RFC 2136 updates. The stand-ins keep no records of their own, so what the API says and what
every authoritative server answers are the same zone."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.zone


@dataclass(frozen=True)
class Entry:
    name: str  # absolute, with the root dot
    rtype: str
    ttl: int
    content: str  # rdata text; host names absolute


class UpdateRefused(Exception):
    """BIND refused an update (its rcode in the message)."""


class BindZone:
    def __init__(self, zone: str, host: str, port: int, key_name: str, key_secret: str,
                 algorithm: str = "hmac-sha256") -> None:
        self.zone = zone.rstrip(".") + "."
        self.host, self.port = host, port
        self._keyring = dns.tsigkeyring.from_text({key_name: key_secret})
        self._key_name = dns.name.from_text(key_name)
        self._algorithm = dns.name.from_text(algorithm)
        self.lock = threading.RLock()  # one API request at a time reads-then-writes the zone

    def entries(self) -> list[Entry]:
        """Every record of the zone but its SOA and apex NS (the provider keeps those)."""
        xfr = dns.query.xfr(self.host, self.zone, port=self.port, timeout=5, lifetime=10, keyring=self._keyring,
                            keyname=self._key_name, keyalgorithm=self._algorithm, relativize=False)
        z = dns.zone.from_xfr(xfr, relativize=False)
        out = []
        origin = dns.name.from_text(self.zone)
        for name, node in z.nodes.items():
            for rds in node.rdatasets:
                if rds.rdtype == dns.rdatatype.SOA or (rds.rdtype == dns.rdatatype.NS and name == origin):
                    continue
                for rd in rds:
                    out.append(Entry(name.to_text(), rds.rdtype.name, int(rds.ttl),
                                     rd.to_text(origin=dns.name.root, relativize=False)))
        return sorted(out, key=lambda e: (e.name, e.rtype, e.content))

    def _send(self, build: dns.update.UpdateMessage) -> None:
        r = dns.query.tcp(build, self.host, port=self.port, timeout=5)
        if r.rcode() != dns.rcode.NOERROR:
            raise UpdateRefused(dns.rcode.to_text(r.rcode()))

    def _message(self) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(self.zone, keyring=self._keyring, keyname=self._key_name,
                                        keyalgorithm=self._algorithm)

    def add(self, name: str, rtype: str, ttl: int, content: str) -> None:
        msg = self._message()
        msg.add(name, ttl, rtype, content)  # BIND gives the whole record set this TTL, as DNS does
        self._send(msg)

    def delete(self, name: str, rtype: str, content: str) -> None:
        msg = self._message()
        msg.delete(name, rtype, content)
        self._send(msg)

    def replace_one(self, old: Entry, new: Entry) -> None:
        """One record changed in place, in one update (an API's PUT is atomic too)."""
        msg = self._message()
        msg.delete(old.name, old.rtype, old.content)
        msg.add(new.name, new.ttl, new.rtype, new.content)
        self._send(msg)
