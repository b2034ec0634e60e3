"""A TSIG key from a runbook secret: bare base64, or BIND's own key file (what tsig-keygen writes).

    key "migrator-key" {
        algorithm hmac-sha256;
        secret "base64...";
    };

Comments (`#`, `//`, `/* */`) are allowed; a file with several keys is searched for the runbook's
`environment.dns.tsig.name`. Errors never quote the secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

ALGORITHMS = ("hmac-sha256", "hmac-sha512", "hmac-sha384", "hmac-sha224", "hmac-sha1", "hmac-md5")
DEFAULT_ALGORITHM = "hmac-sha256"
EXPECTED = 'a base64 TSIG key or a BIND key file (key "NAME" { algorithm ALG; secret "BASE64"; };)'

# A quoted string is matched first and kept: a base64 secret may hold "//" (1 key in ~100 does).
_COMMENTS = re.compile(r'"[^"]*"|/\*.*?\*/|//[^\n]*|#[^\n]*', re.DOTALL)
_KEY = re.compile(r'\bkey\s+("([^"]+)"|([\w.-]+))\s*\{(.*?)\}\s*;', re.DOTALL)
_CLAUSE = re.compile(r'\s*(algorithm|secret)\s+("([^"]*)"|([^\s;]+))\s*;', re.DOTALL)


class TSIGKeyError(ValueError):
    """A value that is no TSIG key; the message says what was expected, never the value."""


@dataclass(frozen=True)
class TSIGKey:
    name: str | None  # None for a bare base64 key
    algorithm: str | None
    secret: str  # base64

    def checked(self, name: str, algorithm: str | None) -> tuple[str, str]:
        """(algorithm, secret) for the runbook's key name and algorithm (None: the file's, or the default)."""
        if self.name is not None and self.name.rstrip(".").lower() != name.rstrip(".").lower():
            raise TSIGKeyError(f"the key file defines key {self.name!r}, not {name!r} (environment.dns.tsig.name)")
        if algorithm and self.algorithm and algorithm.lower() != self.algorithm.lower():
            raise TSIGKeyError(f"the key file says algorithm {self.algorithm}, the runbook {algorithm}")
        chosen = (algorithm or self.algorithm or DEFAULT_ALGORITHM).lower()
        if chosen not in ALGORITHMS:
            raise TSIGKeyError(f"unknown algorithm {chosen!r} (known: {', '.join(ALGORITHMS)})")
        return chosen, self.secret


def _base64(text: str) -> str | None:
    """The key when `text` is one base64 token of at least 16 bytes (an HMAC key; tsig-keygen makes
    32 or more), else None: a word or a password must not pass for a key."""
    words = text.split()
    if len(words) != 1:
        return None
    try:
        raw = base64.b64decode(words[0], validate=True)
    except (binascii.Error, ValueError):
        return None
    return words[0] if len(raw) >= 16 else None


def parse_keys(text: str) -> list[TSIGKey]:
    """Every key of a BIND key file, or the one bare base64 key; TSIGKeyError when neither."""
    bare = _base64(text)
    if bare is not None:
        return [TSIGKey(None, None, bare)]
    stripped = _COMMENTS.sub(lambda m: m.group(0) if m.group(0).startswith('"') else " ", text)
    keys: list[TSIGKey] = []
    for m in _KEY.finditer(stripped):
        name = m.group(2) or m.group(3)
        clauses: dict[str, str] = {}
        body = m.group(4)
        pos = 0
        while body[pos:].strip():
            c = _CLAUSE.match(body, pos)
            if c is None:
                raise TSIGKeyError(f'key "{name}": expected `algorithm ALG;` and `secret "BASE64";` inside its braces')
            clauses[c.group(1)] = c.group(3) if c.group(3) is not None else c.group(4)
            pos = c.end()
        if "secret" not in clauses:
            raise TSIGKeyError(f'key "{name}" has no secret')
        secret = _base64(clauses["secret"])
        if secret is None:
            raise TSIGKeyError(f'key "{name}": its secret is not base64')
        keys.append(TSIGKey(name, clauses.get("algorithm"), secret))
    if not keys:
        raise TSIGKeyError(f"not {EXPECTED}")
    return keys


def resolve(text: str, name: str, algorithm: str | None) -> tuple[str, str]:
    """(algorithm, base64 secret) for key `name` from a secret's value."""
    keys = parse_keys(text)
    if keys[0].name is None:
        return keys[0].checked(name, algorithm)
    for key in keys:
        if key.name and key.name.rstrip(".").lower() == name.rstrip(".").lower():
            return key.checked(name, algorithm)
    if len(keys) == 1:
        return keys[0].checked(name, algorithm)  # raises: names the key the file does define
    raise TSIGKeyError(f"the key file defines {', '.join(repr(k.name) for k in keys)}, not {name!r} "
                       "(environment.dns.tsig.name)")
