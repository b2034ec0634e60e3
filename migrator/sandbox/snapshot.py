"""A comparable picture of the sandbox platform after a migration: what the chaos test and the chaos
bench compare between an uninterrupted rehearsal and one that was crashed and resumed.

It covers the target side (databases, OpenBao, Kubernetes objects, the uploads PVC, the target Keycloak's
hostname), DNS, and the VPS's running services. Volatile fields (uids, resourceVersions, timestamps, SOA
serials, OpenBao created_time) are left out: two correct migrations differ in those and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

from . import bind, compose, openbao
from .envfile import read as read_env_file
from .layout import (
    DNS_PRIMARY_HOST,
    DNS_PRIMARY_PORT,
    DNS_ZONE,
    KUBE_API_PORT,
    LOOPBACK,
    TARGET_PG_PORTS,
    Paths,
)

KUBE_KINDS = (("api/v1", "configmaps"), ("api/v1", "secrets"), ("api/v1", "services"), ("api/v1", "serviceaccounts"),
              ("api/v1", "persistentvolumeclaims"), ("apis/apps/v1", "deployments"), ("apis/apps/v1", "statefulsets"),
              ("apis/apps/v1", "daemonsets"), ("apis/networking.k8s.io/v1", "ingresses"),
              ("apis/networking.k8s.io/v1", "networkpolicies"), ("apis/rbac.authorization.k8s.io/v1", "roles"),
              ("apis/rbac.authorization.k8s.io/v1", "rolebindings"), ("api/v1", "namespaces"))
SYSTEM_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dns_records() -> list[str]:
    import dns.query
    import dns.rdatatype
    import dns.zone

    paths = Paths(_root())
    z = dns.zone.from_xfr(dns.query.xfr(DNS_PRIMARY_HOST, DNS_ZONE, port=DNS_PRIMARY_PORT, timeout=5,
                                        keyring=bind.keyring(paths), keyname=bind.TSIG_KEY_NAME))
    out = []
    for name, node in z.nodes.items():
        for rds in node.rdatasets:
            if rds.rdtype == dns.rdatatype.SOA:
                continue
            out.append(f"{name} {rds.ttl} {dns.rdatatype.to_text(rds.rdtype)} {sorted(r.to_text() for r in rds)}")
    return sorted(out)


def kube_objects() -> dict[str, str]:
    out: dict[str, str] = {}
    for prefix, plural in KUBE_KINDS:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{KUBE_API_PORT}/{prefix}/{plural}", timeout=10) as resp:
            items = json.load(resp).get("items", [])
        for obj in items:
            meta = obj.get("metadata", {})
            ns = meta.get("namespace", "")
            if ns in SYSTEM_NAMESPACES or (plural == "namespaces" and meta.get("name") in SYSTEM_NAMESPACES):
                continue
            if plural == "configmaps" and meta.get("name") == "kube-root-ca.crt":
                continue
            stable = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
            stable["labels"] = meta.get("labels") or {}
            stable["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items()
                                     if "kubectl.kubernetes.io/last-applied" not in k}
            out[f"{plural}/{ns}/{meta.get('name')}"] = _digest(stable)
    return out


def databases() -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    password = read_env_file(Paths(_root()).env_file).get("TARGET_PG_PASSWORD", "")
    out: dict[str, Any] = {}
    for name, port in TARGET_PG_PORTS.items():
        try:
            conn = psycopg.connect(host=LOOPBACK, port=port, user="postgres", password=password, dbname=name,
                                   connect_timeout=5, autocommit=True)
        except psycopg.OperationalError:
            out[name] = "absent"
            continue
        with conn:
            tables = conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema') "
                "ORDER BY 1, 2").fetchall()
            db: dict[str, Any] = {}
            for schema, table in tables:
                q = sql.SQL("SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') "
                            "FROM {}.{} t").format(sql.Identifier(schema), sql.Identifier(table))
                count, digest = conn.execute(q).fetchone() or (0, "")
                db[f"{schema}.{table}"] = [count, digest]
            seqs = conn.execute("SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences "
                                "ORDER BY 1").fetchall()
            db["_sequences"] = {k: v for k, v in seqs}
            db["_subscriptions"] = [r[0] for r in conn.execute("SELECT subname FROM pg_subscription").fetchall()]
            out[name] = db
    return out


def openbao_target() -> dict[str, Any]:
    import hvac

    paths = Paths(_root())
    client = hvac.Client(url=openbao.target_url(), token=openbao.token_file(paths, "target").read_text().strip(),
                         timeout=10)
    out: dict[str, Any] = {"policies": sorted(client.sys.list_acl_policies()["data"]["keys"])}
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    for mount, info in sorted(mounts.items()):
        if info.get("type") != "kv" or (info.get("options") or {}).get("version") != "2":
            continue
        mount = mount.rstrip("/")
        stack, found = [""], {}
        while stack:  # bounded by the tree's size
            prefix = stack.pop()
            try:
                keys = client.secrets.kv.v2.list_secrets(path=prefix, mount_point=mount)["data"]["keys"]
            except hvac.exceptions.InvalidPath:
                continue
            for key in keys:
                if key.endswith("/"):
                    stack.append(prefix + key)
                    continue
                meta = client.secrets.kv.v2.read_secret_metadata(path=prefix + key, mount_point=mount)["data"]
                versions = {v: {"deleted": bool(d.get("deletion_time")), "destroyed": d.get("destroyed")}
                            for v, d in meta.get("versions", {}).items()}
                found[prefix + key] = _digest({"current": meta.get("current_version"), "versions": versions,
                                                "custom": meta.get("custom_metadata"),
                                                "max": meta.get("max_versions")})
        out[mount] = found
    return out


def uploads() -> dict[str, str]:
    root = Paths(_root()).uploads_pvc
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(root.rglob("*")) if p.is_file()}


def vps_services() -> list[str]:
    return sorted(f"{c.get('Service')}:{c.get('State')}" for c in compose.ps(Paths(_root())))


def target_keycloak_hostname() -> str | None:
    env = Paths(_root()).root / "target-keycloak" / "keycloak.env"
    return read_env_file(env).get("KC_HOSTNAME") if env.exists() else None


def take() -> dict[str, Any]:
    """Everything above, in one JSON-able document."""
    return {"dns": dns_records(), "kube": kube_objects(), "databases": databases(), "openbao": openbao_target(),
            "uploads": uploads(), "vps": vps_services(), "keycloak_hostname": target_keycloak_hostname()}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Human-readable differences between two snapshots (empty when they are equal)."""
    out = []
    for part in sorted(set(a) | set(b)):
        x, y = a.get(part), b.get(part)
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                if x.get(key) != y.get(key):
                    out.append(f"{part}.{key}: {str(x.get(key))[:120]} != {str(y.get(key))[:120]}")
        elif isinstance(x, list) and isinstance(y, list):
            out.append(f"{part}: only in first {sorted(set(x) - set(y))[:5]}, only in second {sorted(set(y) - set(x))[:5]}")
        else:
            out.append(f"{part}: {str(x)[:120]} != {str(y)[:120]}")
    return out


def _root() -> Path:
    from .layout import default_dir

    return default_dir()
