"""Keycloak over HTTP: OIDC discovery, admin counts, a client-credentials token; nothing secret returned.

The admin token comes from the master realm's `admin-cli` password grant (as `kcadm` does). Tokens and
passwords stay in memory, are registered for masking, and never appear in errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from migrator import redact
from migrator.adapters.lazy import lazy
from migrator.errors import PermanentError, TemporaryError
from migrator.runbook.environment import KeycloakEndpoint

if TYPE_CHECKING:
    import requests
else:
    requests = lazy("requests")

KINDS = ("clients", "roles", "groups", "users")


class KeycloakClient:
    def __init__(self, endpoint: KeycloakEndpoint, admin_password: str | None) -> None:
        self.ep = endpoint
        self.base = endpoint.url.rstrip("/")
        self._password = admin_password
        self._token: str | None = None
        self.session = requests.Session()
        self.session.verify = endpoint.ca_file or True
        if not endpoint.tls_verify:
            self.session.verify = False  # ok: rehearsal only, runbook opt-in
        if endpoint.host_header:
            self.session.headers["Host"] = endpoint.host_header

    def close(self) -> None:
        self.session.close()

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            resp = self.session.request(method, self.base + path, timeout=self.ep.timeout_s, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TemporaryError(f"Keycloak {self.base}: {what}: unreachable ({exc.__class__.__name__})") from None
        if resp.status_code >= 500:
            raise TemporaryError(f"Keycloak {self.base}: {what}: HTTP {resp.status_code}")
        return resp

    def _json(self, resp: requests.Response, what: str) -> Any:
        if resp.status_code != 200:
            raise PermanentError(f"Keycloak {self.base}: {what}: HTTP {resp.status_code}")
        try:
            return resp.json()
        except ValueError:
            raise PermanentError(f"Keycloak {self.base}: {what}: not JSON") from None

    # -- public ------------------------------------------------------------------------------------
    def discovery(self, realm: str) -> dict[str, Any]:
        what = f"discovery of realm {realm}"
        doc = self._json(self._request("GET", f"/realms/{quote(realm)}/.well-known/openid-configuration", what), what)
        if not isinstance(doc, dict):
            raise PermanentError(f"Keycloak {self.base}: {what}: not a JSON object")
        return doc

    def client_credentials(self, realm: str, client_id: str, secret: str) -> str | None:
        """None when a token is issued, else why not (the server's error code, never the secret)."""
        redact.register(secret)
        resp = self._request("POST", f"/realms/{quote(realm)}/protocol/openid-connect/token",
                             f"token for {client_id}", data={"grant_type": "client_credentials"},
                             auth=(client_id, secret))
        if resp.status_code == 200:
            try:
                token = resp.json().get("access_token")
            except ValueError:
                token = None
            if token:
                redact.register(str(token))
                return None
            return "no access_token in the answer"
        try:
            err = resp.json().get("error", "")
        except ValueError:
            err = ""
        return f"HTTP {resp.status_code} {err}".strip()

    # -- admin ---------------------------------------------------------------------------------------
    def _admin_token(self) -> str:
        if self._token:
            return self._token
        if not self._password:
            raise PermanentError(f"Keycloak {self.base}: no admin_password secret in environment.keycloak")
        resp = self._request("POST", "/realms/master/protocol/openid-connect/token", "admin login",
                             data={"grant_type": "password", "client_id": "admin-cli",
                                   "username": self.ep.admin_user, "password": self._password})
        if resp.status_code != 200:
            raise PermanentError(f"Keycloak {self.base}: admin login as {self.ep.admin_user}: HTTP {resp.status_code}")
        token = str(self._json(resp, "admin login").get("access_token") or "")
        if not token:
            raise PermanentError(f"Keycloak {self.base}: admin login: no access_token")
        redact.register(token)
        self._token = token
        return token

    def admin(self, path: str) -> Any:
        what = f"GET /admin{path}"
        resp = self._request("GET", f"/admin{path}", what, headers={"Authorization": f"Bearer {self._admin_token()}"})
        if resp.status_code == 401:
            # Admin tokens are short-lived (60 s in the master realm by default) and a restarted server may
            # not know an old one: log in again, once.
            self._token = None
            resp = self._request("GET", f"/admin{path}", what,
                                 headers={"Authorization": f"Bearer {self._admin_token()}"})
        return self._json(resp, what)

    def realms(self) -> list[str]:
        return sorted(str(r["realm"]) for r in self.admin("/realms"))

    def counts(self, realm: str) -> dict[str, int]:
        r = f"/realms/{quote(realm)}"
        groups = self.admin(f"{r}/groups/count")
        return {
            "clients": len(self.admin(f"{r}/clients")),
            "roles": len(self.admin(f"{r}/roles")),
            "groups": int(groups["count"] if isinstance(groups, dict) else groups),
            "users": int(self.admin(f"{r}/users/count")),
        }

    def inventory(self, realms: list[str] | None = None) -> dict[str, dict[str, int]]:
        """realm -> counts, for the given realms or every realm."""
        return {r: self.counts(r) for r in (realms or self.realms())}


def compare_counts(expected: dict[str, dict[str, int]], actual: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for realm in sorted(set(expected) | set(actual)):
        if realm not in actual:
            out.append(f"realm {realm}: missing on the target")
            continue
        if realm not in expected:
            out.append(f"realm {realm}: only on the target")
            continue
        for kind in KINDS:
            a, b = expected[realm].get(kind), actual[realm].get(kind)
            if a != b:
                out.append(f"realm {realm}: {kind} {b} on the target, {a} on the source")
    return out
