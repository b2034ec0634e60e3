"""The Keycloak stand-in serves OIDC discovery, client_credentials tokens and admin reads from its DB."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from migrator.sandbox.platform import SandboxInfo

from .helpers import env_of

pytestmark = pytest.mark.sandbox
HOST = "auth.sevensa.test"


def _call(sandbox: SandboxInfo, path: str, form: dict[str, str] | None = None,
          token: str | None = None) -> tuple[int, Any]:
    t = sandbox.facts["traefik"]
    headers = {"Host": HOST}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(f"http://{t['host']}:{t['port']}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_discovery_issuer_uses_hostname(sandbox: SandboxInfo) -> None:
    status, doc = _call(sandbox, "/realms/sevensa/.well-known/openid-configuration")
    assert status == 200
    assert doc["issuer"] == "http://auth.sevensa.test/realms/sevensa"
    assert doc["token_endpoint"].endswith("/realms/sevensa/protocol/openid-connect/token")
    assert _call(sandbox, "/realms/nope/.well-known/openid-configuration")[0] == 404


def test_client_credentials_and_admin(sandbox: SandboxInfo) -> None:
    env = env_of(sandbox)
    token_path = "/realms/sevensa/protocol/openid-connect/token"
    status, tok = _call(sandbox, token_path, {"grant_type": "client_credentials", "client_id": "migrator-smoke",
                                              "client_secret": env["MIGRATOR_SMOKE_CLIENT_SECRET"]})
    assert status == 200 and tok["token_type"] == "Bearer" and tok["access_token"]
    status, _ = _call(sandbox, token_path, {"grant_type": "client_credentials", "client_id": "migrator-smoke",
                                            "client_secret": "wrong"})
    assert status == 401
    # a sevensa-realm token is no admin token
    assert _call(sandbox, "/admin/realms", token=tok["access_token"])[0] == 401
    status, admin = _call(sandbox, "/realms/master/protocol/openid-connect/token",
                          {"grant_type": "password", "client_id": "admin-cli", "username": env["KEYCLOAK_ADMIN_USER"],
                           "password": env["KEYCLOAK_ADMIN_PASSWORD"]})
    assert status == 200
    at = admin["access_token"]
    status, realms = _call(sandbox, "/admin/realms", token=at)
    assert status == 200 and sorted(r["realm"] for r in realms) == ["master", "sevensa"]
    status, clients = _call(sandbox, "/admin/realms/sevensa/clients", token=at)
    assert "migrator-smoke" in {c["clientId"] for c in clients}
    assert _call(sandbox, "/admin/realms/sevensa/users/count", token=at) == (200, 200 * (sandbox.scale or 1))
    status, roles = _call(sandbox, "/admin/realms/sevensa/roles", token=at)
    assert {"rentguy-admin", "psra-analyst"} <= {r["name"] for r in roles}
    status, groups = _call(sandbox, "/admin/realms/sevensa/groups", token=at)
    assert sorted(g["name"] for g in groups) == ["admins", "analysts", "customers", "operators"]
    assert _call(sandbox, "/admin/realms")[0] == 401
