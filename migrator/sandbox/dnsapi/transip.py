"""TransIP REST API v6, the parts a DNS client uses, on top of a real BIND zone.

- POST /v6/auth: the body {login, nonce, global_key, ...} signed with the account's RSA key (header
  `Signature`: base64 of RSA PKCS#1 v1.5 over SHA-512 of the exact body bytes); answers 201 {token}.
  A wrong signature, an unknown login or a nonce used before: 401 {error}.
- Everything else needs `Authorization: Bearer <token>`; otherwise 401 {error}.
- GET /v6/domains/{domain}: {domain: {name, authCode, ...}}; 404 for another domain.
- GET /v6/domains/{domain}/dns: {dnsEntries: [{name, expire, type, content}]}, names relative ("@": apex).
- POST /v6/domains/{domain}/dns {dnsEntry}: add one entry (201); DELETE the same body: remove it (204,
  404 when no such entry). `expire` must be one of TransIP's values (60, 300, 3600, 86400): 406 otherwise.
"""

from __future__ import annotations

import base64
import secrets
import threading
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .server import Request, Response
from .zone import BindZone, Entry, UpdateRefused

EXPIRES = (60, 300, 3600, 86400)
HOST_TYPES = ("CNAME", "NS", "MX", "SRV")  # content that is a host name: relative unless it ends in a dot


class TransipApi:
    def __init__(self, zone: BindZone, login: str, public_key: rsa.RSAPublicKey) -> None:
        self.zone = zone
        self.domain = zone.zone.rstrip(".")
        self.login, self.public_key = login, public_key
        self.tokens: set[str] = set()
        self.nonces: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, req: Request) -> Response:
        if not req.path.startswith("/v6/"):
            return 404, {"error": "Not found"}
        path = req.path[len("/v6"):]
        if path == "/auth" and req.method == "POST":
            return self._auth(req)
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in self.tokens:
            return 401, {"error": "Your access token is invalid"}
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "domains":
            return 404, {"error": "Not found"}
        if parts[1] != self.domain:
            return 404, {"error": f"Domain with name '{parts[1]}' not found"}
        if len(parts) == 2 and req.method == "GET":
            return 200, {"domain": {"name": self.domain, "authCode": "sandbox-auth-code", "isTransferLocked": False,
                                    "registrationDate": "2020-01-01", "renewalDate": "2027-01-01",
                                    "isWhitelabel": False, "isDnsOnly": False, "tags": []}}
        if len(parts) == 3 and parts[2] == "dns":
            with self.zone.lock:
                if req.method == "GET":
                    return 200, {"dnsEntries": [self._out(e) for e in self.zone.entries()]}
                if req.method in ("POST", "DELETE"):
                    return self._change(req)
            return 405, {"error": f"Method {req.method} not allowed"}
        return 404, {"error": "Not found"}

    # -- auth ----------------------------------------------------------------------------------------
    def _auth(self, req: Request) -> Response:
        try:
            signature = base64.b64decode(req.headers.get("signature", ""), validate=True)
            self.public_key.verify(signature, req.body, padding.PKCS1v15(), hashes.SHA512())
        except (InvalidSignature, ValueError):
            return 401, {"error": "Provided signature is not valid"}
        body = req.json() or {}
        if body.get("login") != self.login:
            return 401, {"error": "Login or signature is invalid"}
        nonce = str(body.get("nonce") or "")
        with self._lock:
            if len(nonce) < 8 or nonce in self.nonces:
                return 401, {"error": "Nonce is invalid or has been used before"}
            self.nonces.add(nonce)
            token = secrets.token_urlsafe(32)
            self.tokens.add(token)
        return 201, {"token": token}

    # -- entries ---------------------------------------------------------------------------------------
    def _out(self, e: Entry) -> dict[str, Any]:
        rel = "@" if e.name == self.zone.zone else e.name[: -len(self.zone.zone) - 1]
        content = e.content
        if e.rtype in HOST_TYPES and content.endswith("." + self.zone.zone):
            content = content[: -len(self.zone.zone) - 1]  # TransIP shows in-zone host names relative
        return {"name": rel, "expire": e.ttl, "type": e.rtype, "content": content}

    def _absolute(self, name: str) -> str:
        return self.zone.zone if name == "@" else f"{name}.{self.zone.zone}"

    def _change(self, req: Request) -> Response:
        entry = (req.json() or {}).get("dnsEntry")
        if not isinstance(entry, dict) or not all(k in entry for k in ("name", "type", "content", "expire")):
            return 406, {"error": "dnsEntry needs name, expire, type and content"}
        name, rtype, content = str(entry["name"]), str(entry["type"]).upper(), str(entry["content"])
        if not name or name.endswith("."):
            return 406, {"error": f"Invalid dns entry name '{name}'"}
        try:
            expire = int(entry["expire"])
        except (TypeError, ValueError):
            expire = -1
        if expire not in EXPIRES:
            return 406, {"error": f"Expire '{entry['expire']}' is invalid; allowed: {', '.join(map(str, EXPIRES))}"}
        if rtype in HOST_TYPES and not content.endswith("."):
            content = self._absolute(content)
        absolute = self._absolute(name)
        current = [e for e in self.zone.entries() if e.name == absolute and e.rtype == rtype]
        try:
            if req.method == "POST":
                if any(e.content == content for e in current):
                    return 406, {"error": "This dns entry already exists"}
                others = [e for e in self.zone.entries() if e.name == absolute and e.rtype != rtype]
                if (rtype == "CNAME" and others) or (rtype != "CNAME" and any(e.rtype == "CNAME" for e in others)):
                    return 406, {"error": "A CNAME entry cannot share its name with other entries"}
                self.zone.add(absolute, rtype, expire, content)
                return 201, None
            match = [e for e in current if e.content == content and e.ttl == expire]
            if not match:
                return 404, {"error": "Dns entry not found"}
            self.zone.delete(absolute, rtype, content)
            return 204, None
        except UpdateRefused as exc:
            return 406, {"error": f"The dns entry was refused: {exc}"}
