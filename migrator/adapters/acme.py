"""Traefik v2's ACME store (`acme.json`): the certificates the VPS's Traefik obtained, as data.

Format: {resolver: {"Account": {...}, "Certificates": [{"domain": {"main": name, "sans": [names]},
"certificate": base64 of the PEM chain, "key": base64 of the PEM private key, "Store": "default"}]}}.
Every certificate is checked as it is read: the chain parses, the key is the leaf's, the names are the
leaf's. Errors name the resolver and the domain, never key material.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from migrator.adapters.lazy import lazy
from migrator.errors import PermanentError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
else:
    x509 = lazy("cryptography.x509")
    hashes = lazy("cryptography.hazmat.primitives.hashes")
    serialization = lazy("cryptography.hazmat.primitives.serialization")


@dataclass(frozen=True)
class AcmeCert:
    resolver: str
    main: str
    sans: tuple[str, ...]
    chain_pem: bytes = b""  # the leaf first
    key_pem: bytes = b""
    not_after: dt.datetime = dt.datetime.min.replace(tzinfo=dt.UTC)
    fingerprint: str = ""  # sha256 of the leaf, hex

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.main, *self.sans)))

    def covers(self, host: str) -> bool:
        """The certificate is valid for `host`: an exact name, or a wildcard for one label (RFC 6125)."""
        host = host.lower().rstrip(".")
        for name in self.names:
            name = name.lower().rstrip(".")
            if name == host or (name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]):
                return True
        return False

    def describe(self) -> str:
        return f"{self.main} ({', '.join(self.sans) or 'no SANs'}; resolver {self.resolver}; " \
               f"expires {self.not_after:%Y-%m-%d})"


def _b64(text: object, what: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise PermanentError(f"{what}: missing")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PermanentError(f"{what}: not base64") from None


def _leaf_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        return set()


def parse(data: bytes, where: str, resolver: str | None = None) -> list[AcmeCert]:
    """Every certificate in an acme.json (of one resolver, if named); PermanentError naming what is wrong."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise PermanentError(f"{where}: not JSON ({exc.__class__.__name__} at line {getattr(exc, 'lineno', '?')})") from None
    if not isinstance(doc, dict):
        raise PermanentError(f"{where}: expected a mapping of resolvers (Traefik v2 acme.json)")
    if resolver is not None and resolver not in doc:
        raise PermanentError(f"{where}: no resolver {resolver!r} (found: {', '.join(sorted(doc)) or 'none'})")
    out: list[AcmeCert] = []
    for name, section in sorted(doc.items()):
        if resolver is not None and name != resolver:
            continue
        if not isinstance(section, dict):
            raise PermanentError(f"{where}: resolver {name}: expected a mapping with Account and Certificates")
        for i, entry in enumerate(section.get("Certificates") or []):
            out.append(_one(entry, f"{where}: resolver {name}, certificate {i + 1}", name))
    return out


def _one(entry: object, what: str, resolver: str) -> AcmeCert:
    if not isinstance(entry, dict) or not isinstance(entry.get("domain"), dict):
        raise PermanentError(f"{what}: expected domain, certificate and key")
    main = str(entry["domain"].get("main") or "")
    sans = tuple(str(s) for s in entry["domain"].get("sans") or [])
    what = f"{what} ({main})"
    chain_pem, key_pem = _b64(entry.get("certificate"), f"{what}: certificate"), _b64(entry.get("key"), f"{what}: key")
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise PermanentError(f"{what}: the certificate is not a PEM chain") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise PermanentError(f"{what}: the key is not an unencrypted PEM private key") from None
    leaf = chain[0]
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
            != leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise PermanentError(f"{what}: the key does not belong to the certificate")
    missing = [n for n in (main, *sans) if n.lower() not in _leaf_names(leaf)]
    if missing:
        raise PermanentError(f"{what}: the certificate does not name {', '.join(missing)}")
    return AcmeCert(resolver, main, sans, chain_pem, key_pem, leaf.not_valid_after_utc,
                    leaf.fingerprint(hashes.SHA256()).hex())


def best_for(certs: list[AcmeCert], hosts: list[str]) -> AcmeCert | None:
    """The certificate covering every host that expires last (Traefik keeps renewed ones beside old)."""
    fitting = [c for c in certs if all(c.covers(h) for h in hosts)]
    return max(fitting, key=lambda c: c.not_after) if fitting else None
