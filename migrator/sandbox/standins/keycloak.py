"""Keycloak stand-in: serves OIDC discovery, client_credentials tokens and admin reads from its real
PostgreSQL database (a Keycloak-like schema), reading through the psql client.

Environment: KC_HOSTNAME (issuer host, e.g. auth.sevensa.test), KC_HOSTNAME_SCHEME (default http),
KC_DB_URL_HOST, KC_DB_URL_DATABASE, KC_DB_USERNAME, KC_DB_PASSWORD (handed to psql as PGPASSWORD, never in
argv), KC_BOOTSTRAP_ADMIN_USERNAME / KC_BOOTSTRAP_ADMIN_PASSWORD (password grant via admin-cli in master).
"""

import base64
import hmac
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.parse

from common import Handler, serve

HOSTNAME = os.environ.get("KC_HOSTNAME", "localhost")
SCHEME = os.environ.get("KC_HOSTNAME_SCHEME", "http")
ADMIN_USER = os.environ.get("KC_BOOTSTRAP_ADMIN_USERNAME", "admin")
ADMIN_PASSWORD = os.environ.get("KC_BOOTSTRAP_ADMIN_PASSWORD", "")
TOKEN_TTL = 300
_TOKENS: dict = {}
_LOCK = threading.Lock()

QUERIES = {
    "realms": "select id, name as realm, enabled from realm order by name",
    "clients": """select c.id, c.client_id as "clientId", c.name, c.enabled, c.public_client as "publicClient",
        c.service_accounts_enabled as "serviceAccountsEnabled", c.protocol, c.root_url as "rootUrl"
        from client c join realm r on r.id = c.realm_id where r.name = :'realm' order by c.client_id""",
    "roles": """select k.id, k.name, k.description, k.client_role as "clientRole", r.id as "containerId"
        from keycloak_role k join realm r on r.id = k.realm_id
        where r.name = :'realm' and not k.client_role order by k.name""",
    "groups": """select g.id, g.name, '/' || g.name as path from keycloak_group g join realm r on r.id = g.realm_id
        where r.name = :'realm' and g.parent_group = ' ' order by g.name""",
    "users": """select u.id, u.username, u.email, u.first_name as "firstName", u.last_name as "lastName",
        u.enabled, u.email_verified as "emailVerified", u.created_timestamp as "createdTimestamp"
        from user_entity u join realm r on r.id = u.realm_id
        where r.name = :'realm' and u.service_account_client_link is null order by u.username""",
}


def psql(sql, **variables):
    """Run one query whose result is a single JSON value; variables go through psql's :'var' quoting."""
    env = dict(os.environ)
    env.update({
        "PGHOST": os.environ.get("KC_DB_URL_HOST", "keycloak-db"),
        "PGPORT": os.environ.get("KC_DB_URL_PORT", "5432"),
        "PGDATABASE": os.environ.get("KC_DB_URL_DATABASE", "keycloak"),
        "PGUSER": os.environ.get("KC_DB_USERNAME", "keycloak"),
        "PGPASSWORD": os.environ.get("KC_DB_PASSWORD", ""),
        "PGCONNECT_TIMEOUT": "5",
    })
    argv = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    for k, v in variables.items():
        argv += ["-v", f"{k}={v}"]
    cp = subprocess.run(argv, input=sql.encode(), capture_output=True, env=env, timeout=15, check=False)
    if cp.returncode != 0:
        raise RuntimeError(cp.stderr.decode(errors="replace").strip())
    out = cp.stdout.decode().strip()
    return json.loads(out) if out else None


def rows(query, realm=None):
    sql = f"select coalesce(json_agg(t), '[]'::json) from ({query}) t;\n"
    return psql(sql, realm=realm or "")


def realm_exists(realm):
    return bool(psql("select to_json(count(*) > 0) from realm where name = :'realm';\n", realm=realm))


def client_secret_ok(realm, client_id, secret):
    found = psql(
        "select to_json(c.secret) from client c join realm r on r.id = c.realm_id "
        "where r.name = :'realm' and c.client_id = :'client' and c.enabled and not c.public_client;\n",
        realm=realm, client=client_id)
    return isinstance(found, str) and hmac.compare_digest(found.encode(), secret.encode())


def issuer(realm):
    return f"{SCHEME}://{HOSTNAME}/realms/{realm}"


def issue(realm, client_id, subject):
    token = secrets.token_urlsafe(32)
    with _LOCK:
        _TOKENS[token] = {"realm": realm, "client": client_id, "sub": subject, "exp": time.time() + TOKEN_TTL}
    return {"access_token": token, "expires_in": TOKEN_TTL, "refresh_expires_in": 0, "token_type": "Bearer",
            "not-before-policy": 0, "scope": "profile email"}


class KeycloakHandler(Handler):
    def route(self):
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        return [urllib.parse.unquote(p) for p in path.split("/") if p]

    def admin_ok(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            with _LOCK:
                info = _TOKENS.get(auth[7:].strip())
            return bool(info and info["realm"] == "master" and info["exp"] > time.time())
        if auth.startswith("Basic ") and ADMIN_PASSWORD:
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return user == ADMIN_USER and hmac.compare_digest(pw.encode(), ADMIN_PASSWORD.encode())
        return False

    def do_GET(self):
        parts = self.route()
        if parts in (["health"], ["health", "ready"], ["health", "live"]):
            try:
                psql("select to_json(1);\n")
                self.send_json(200, {"status": "UP", "checks": [{"name": "database", "status": "UP"}]})
            except Exception as exc:  # noqa: BLE001
                self.send_json(503, {"status": "DOWN", "checks": [{"name": "database", "status": "DOWN",
                                                                   "data": str(exc)}]})
            return
        if self.basic():
            return
        try:
            self.get(parts)
        except Exception as exc:  # noqa: BLE001
            self.send_json(500, {"error": "unknown_error", "error_description": str(exc)})

    def get(self, parts):
        if len(parts) == 4 and parts[0] == "realms" and parts[2:] == [".well-known", "openid-configuration"]:
            realm = parts[1]
            if not realm_exists(realm):
                self.send_json(404, {"error": "Realm does not exist"})
                return
            iss = issuer(realm)
            base = f"{iss}/protocol/openid-connect"
            self.send_json(200, {
                "issuer": iss, "authorization_endpoint": f"{base}/auth", "token_endpoint": f"{base}/token",
                "introspection_endpoint": f"{base}/token/introspect", "userinfo_endpoint": f"{base}/userinfo",
                "end_session_endpoint": f"{base}/logout", "jwks_uri": f"{base}/certs",
                "grant_types_supported": ["client_credentials", "password"],
                "response_types_supported": ["code", "token"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            })
            return
        if len(parts) == 2 and parts[0] == "realms":
            if not realm_exists(parts[1]):
                self.send_json(404, {"error": "Realm does not exist"})
                return
            self.send_json(200, {"realm": parts[1], "token-service": f"{issuer(parts[1])}/protocol/openid-connect"})
            return
        if parts[:1] == ["admin"]:
            if not self.admin_ok():
                self.send_json(401, {"error": "HTTP 401 Unauthorized"})
                return
            if parts == ["admin", "realms"]:
                self.send_json(200, rows(QUERIES["realms"]))
                return
            if len(parts) == 3 and parts[1] == "realms":
                found = [r for r in rows(QUERIES["realms"]) if r["realm"] == parts[2]]
                self.send_json(200 if found else 404, found[0] if found else {"error": "Realm not found."})
                return
            if len(parts) in (4, 5) and parts[1] == "realms" and parts[3] in QUERIES and parts[3] != "realms":
                realm, kind = parts[2], parts[3]
                if not realm_exists(realm):
                    self.send_json(404, {"error": "Realm not found."})
                    return
                data = rows(QUERIES[kind], realm)
                if len(parts) == 5:
                    if parts[4] == "count":
                        self.send_json(200, len(data) if kind == "users" else {"count": len(data)}
                                       if kind == "groups" else len(data))
                        return
                    self.send_json(404, {"error": "not found"})
                    return
                self.send_json(200, data)
                return
        self.send_json(404, {"error": "Unable to find matching target resource method"})

    def do_POST(self):
        parts = self.route()
        body = self.read_body().decode(errors="replace")
        if len(parts) == 5 and parts[0] == "realms" and parts[2:] == ["protocol", "openid-connect", "token"]:
            try:
                self.token(parts[1], dict(urllib.parse.parse_qsl(body)))
            except Exception as exc:  # noqa: BLE001
                self.send_json(500, {"error": "unknown_error", "error_description": str(exc)})
            return
        self.send_json(404, {"error": "Unable to find matching target resource method"})

    def token(self, realm, form):
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            cid, _, sec = base64.b64decode(auth[6:]).decode().partition(":")
            client_id, secret = urllib.parse.unquote(cid), urllib.parse.unquote(sec)
        if not realm_exists(realm):
            self.send_json(404, {"error": "Realm does not exist"})
            return
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if client_id and secret and client_secret_ok(realm, client_id, secret):
                self.send_json(200, issue(realm, client_id, f"service-account-{client_id}"))
            else:
                self.send_json(401, {"error": "unauthorized_client",
                                     "error_description": "Invalid client or Invalid client credentials"})
            return
        if grant == "password" and realm == "master" and client_id == "admin-cli":
            ok = ADMIN_PASSWORD and form.get("username") == ADMIN_USER and hmac.compare_digest(
                form.get("password", "").encode(), ADMIN_PASSWORD.encode())
            if ok:
                self.send_json(200, issue(realm, client_id, ADMIN_USER))
            else:
                self.send_json(401, {"error": "invalid_grant", "error_description": "Invalid user credentials"})
            return
        self.send_json(400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"})


if __name__ == "__main__":
    serve(KeycloakHandler)
