"""OpenBao, both sides, real ``bao server`` with raft storage (not dev mode: the raft-snapshot strategy needs it).

* source: the ``openbao`` service of the Compose project (published on the VPS's loopback 127.0.0.1:18200),
  initialized and unsealed by us, seeded with KV v2 secrets for every service (several versions, one
  deleted version, one destroyed version, custom metadata), one ACL policy and one AppRole per service;
* target: a ``bao server`` process on the host (127.0.0.1:28200), initialized and unsealed, otherwise empty.

Unseal keys and root tokens are kept in files of mode 0600 under ``<dir>/openbao``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import hvac

from .images import bao_binary
from .layout import (
    LOOPBACK,
    SOURCE_OPENBAO_HOST,
    SOURCE_OPENBAO_PORT,
    TARGET_OPENBAO_CLUSTER_PORT,
    TARGET_OPENBAO_PORT,
    Paths,
)
from .proc import Log, SandboxError, pid_alive, spawn, stop_pid_file, tcp_open, wait_until

SHARES, THRESHOLD = 3, 2
KV_MOUNT = "secret"

#: KV path -> (owner domain, keys taken from the env file or generated)
SECRETS: dict[str, dict[str, str]] = {
    "rentguy/api": {"JWT_SECRET": "env:RENTGUY_JWT_SECRET", "SMTP_PASSWORD": "gen"},
    "rentguy/db": {"username": "rentguy", "password": "env:RENTGUY_DB_PASSWORD"},
    "psra/api": {"API_KEY": "gen", "ORIGIN_ENGINE_TOKEN": "gen"},
    "psra/db": {"username": "psra", "password": "env:PSRA_DB_PASSWORD"},
    "wpcs/api": {"PROVISIONER_TOKEN": "gen"},
    "wpcs/db": {"username": "wpcs", "password": "env:WPCS_DB_PASSWORD"},
    "ai/langgraph": {"ANTHROPIC_API_KEY": "env:ANTHROPIC_API_KEY"},
    "ai/n8n": {"N8N_ENCRYPTION_KEY": "env:N8N_ENCRYPTION_KEY"},
    "ai/claude-chat": {"ANTHROPIC_API_KEY": "env:ANTHROPIC_API_KEY", "SESSION_SECRET": "gen"},
    "ai/trading-dashboard": {"BROKER_API_KEY": "gen"},
    "infra/keycloak": {"admin_user": "env:KEYCLOAK_ADMIN_USER", "admin_password": "env:KEYCLOAK_ADMIN_PASSWORD",
                       "migrator_smoke_client_secret": "env:MIGRATOR_SMOKE_CLIENT_SECRET"},
    "infra/keycloak-db": {"username": "keycloak", "password": "env:KEYCLOAK_DB_PASSWORD"},
    "infra/traefik": {"dashboard_password": "gen"},
    "monitoring/grafana": {"admin_password": "env:GRAFANA_ADMIN_PASSWORD"},
}
#: AppRole / policy per service: name -> KV path prefixes it may read
SERVICE_POLICIES: dict[str, list[str]] = {
    "rentguy-api": ["rentguy/*"],
    "psra-api": ["psra/*"],
    "psra-origin-engine": ["psra/api", "ai/langgraph"],
    "wpcs-api": ["wpcs/*"],
    "ai-langgraph": ["ai/langgraph"],
    "ai-n8n": ["ai/n8n"],
    "ai-claude-chat": ["ai/claude-chat"],
    "ai-trading-dashboard": ["ai/trading-dashboard"],
    "keycloak": ["infra/keycloak", "infra/keycloak-db"],
    "traefik": ["infra/traefik"],
    "grafana": ["monitoring/grafana"],
}
#: facts the tests (and parity checks) rely on
VERSIONED_PATH = "rentguy/api"  # 3 versions, version 1 deleted (soft)
DESTROYED_PATH = "psra/api"  # 2 versions, version 1 destroyed
CUSTOM_METADATA = {"owner": "sevensa-platform", "rotation": "90d", "migrated-from": "vps"}


def _write_0600(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def source_url() -> str:
    return f"http://{SOURCE_OPENBAO_HOST}:{SOURCE_OPENBAO_PORT}"


def target_url() -> str:
    return f"http://{LOOPBACK}:{TARGET_OPENBAO_PORT}"


def init_file(paths: Paths, side: str) -> Path:
    return paths.openbao / f"{side}-init.json"


def token_file(paths: Paths, side: str) -> Path:
    return paths.openbao / f"{side}-root-token"


def root_token(paths: Paths, side: str) -> str:
    return token_file(paths, side).read_text().strip()


def _health(url: str) -> dict[str, Any]:
    client = hvac.Client(url=url, timeout=3)
    resp = client.sys.read_health_status(method="GET", standby_ok=True, sealed_code=200, uninit_code=200)
    return resp.json() if hasattr(resp, "json") else dict(resp)


def init_and_unseal(paths: Paths, side: str, url: str, log: Log) -> None:
    """Initialize once (keys and root token saved 0600), unseal whenever sealed, wait until active."""
    wait_until(f"openbao {side} API", lambda: bool(_health(url)), 60, 0.2)
    client = hvac.Client(url=url, timeout=10)
    keys_path = init_file(paths, side)
    if not client.sys.is_initialized():
        if side == "source":  # static auto-unseal: recovery keys instead of unseal keys
            result = client.adapter.put("/v1/sys/init", json={"recovery_shares": SHARES,
                                                              "recovery_threshold": THRESHOLD})
            result = result.json() if hasattr(result, "json") else dict(result)
        else:
            result = client.sys.initialize(secret_shares=SHARES, secret_threshold=THRESHOLD)
        _write_0600(keys_path, json.dumps(result, indent=2))
        _write_0600(token_file(paths, side), result["root_token"] + "\n")
        log(f"openbao {side}: initialized ({SHARES} shares, threshold {THRESHOLD})")
    elif not keys_path.exists():
        raise SandboxError(f"openbao {side} is initialized but {keys_path} is missing: cannot unseal")
    keys = json.loads(keys_path.read_text()).get("keys") or []
    if keys and client.sys.is_sealed():  # Shamir (the target); the source unseals itself
        client.sys.submit_unseal_keys(keys[:THRESHOLD])
        log(f"openbao {side}: unsealed")

    def active() -> bool:
        h = _health(url)
        return bool(h.get("initialized") and not h.get("sealed") and not h.get("standby"))

    wait_until(f"openbao {side} active", active, 60, 0.2)
    token = root_token(paths, side)
    wait_until(f"openbao {side} accepts its root token",
               lambda: hvac.Client(url=url, token=token, timeout=5).is_authenticated(), 30, 0.2)


def _value(spec: str, env: dict[str, str], path: str, key: str, version: int) -> str:
    if spec.startswith("env:"):
        return env[spec[4:]]
    if spec == "gen":
        return f"{path.replace('/', '-')}-{key.lower()}-v{version}-" + os.urandom(9).hex()
    return spec


def seed_source(paths: Paths, env: dict[str, str], log: Log) -> None:
    marker = paths.openbao / "source-seeded"
    if marker.exists():
        log("openbao source: already seeded")
        return
    client = hvac.Client(url=source_url(), token=root_token(paths, "source"), timeout=15)
    if f"{KV_MOUNT}/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
        wait_until("kv v2 mount", lambda: _kv_ready(client), 30, 0.2)
    kv = client.secrets.kv.v2
    for path, spec in SECRETS.items():
        versions = 3 if path == VERSIONED_PATH else 2 if path == DESTROYED_PATH else 1
        for v in range(1, versions + 1):
            data = {k: _value(s, env, path, k, v) for k, s in spec.items()}
            if path == VERSIONED_PATH:
                data["rotated"] = f"rotation-{v}"
            kv.create_or_update_secret(path=path, secret=data, mount_point=KV_MOUNT)
        domain = path.split("/", 1)[0]
        kv.update_metadata(path=path, mount_point=KV_MOUNT, max_versions=10,
                           custom_metadata={**CUSTOM_METADATA, "domain": domain})
    kv.delete_secret_versions(path=VERSIONED_PATH, versions=[1], mount_point=KV_MOUNT)
    kv.destroy_secret_versions(path=DESTROYED_PATH, versions=[1], mount_point=KV_MOUNT)
    for name, prefixes in SERVICE_POLICIES.items():
        rules = "\n".join(
            f'path "{KV_MOUNT}/data/{p}" {{ capabilities = ["read"] }}\n'
            f'path "{KV_MOUNT}/metadata/{p}" {{ capabilities = ["read", "list"] }}'
            for p in prefixes)
        client.sys.create_or_update_policy(name=name, policy=rules)
    if "approle/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("approle")
    for name in SERVICE_POLICIES:
        client.auth.approle.create_or_update_approle(role_name=name, token_policies=[name], token_ttl="1h",
                                                     token_max_ttl="4h", secret_id_ttl="24h")
    marker.write_text("seeded\n")
    log(f"openbao source: seeded {len(SECRETS)} KV secrets, {len(SERVICE_POLICIES)} policies and AppRoles")


def _kv_ready(client: hvac.Client) -> bool:
    try:
        client.secrets.kv.v2.read_configuration(mount_point=KV_MOUNT)
        return True
    except hvac.exceptions.VaultError:
        return False


def source_up(paths: Paths, env: dict[str, str], log: Log) -> None:
    paths.openbao.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.openbao, 0o700)
    init_and_unseal(paths, "source", source_url(), log)
    seed_source(paths, env, log)


# --- target ---------------------------------------------------------------------------------------

def target_dir(paths: Paths) -> Path:
    return paths.openbao / "target"


def target_pid_file(paths: Paths) -> Path:
    return target_dir(paths) / "bao.pid"


def target_running(paths: Paths) -> int | None:
    return pid_alive(target_pid_file(paths), "bao")


def target_up(paths: Paths, log: Log) -> None:
    d = target_dir(paths)
    (d / "data").mkdir(parents=True, exist_ok=True)
    os.chmod(paths.openbao, 0o700)
    config = d / "config.hcl"
    config.write_text(f"""storage "raft" {{
  path    = "{d / 'data'}"
  node_id = "cluster-openbao-0"
  performance_multiplier = 1
}}
listener "tcp" {{
  address     = "{LOOPBACK}:{TARGET_OPENBAO_PORT}"
  cluster_address = "{LOOPBACK}:{TARGET_OPENBAO_CLUSTER_PORT}"
  tls_disable = true
}}
api_addr      = "{target_url()}"
cluster_addr  = "http://{LOOPBACK}:{TARGET_OPENBAO_CLUSTER_PORT}"
disable_mlock = true
ui            = false
""")
    if target_running(paths) is None:
        if tcp_open(LOOPBACK, TARGET_OPENBAO_PORT):
            raise SandboxError(f"{LOOPBACK}:{TARGET_OPENBAO_PORT} is taken by another process")
        pid = spawn([bao_binary(), "server", f"-config={config}"], pid_file=target_pid_file(paths),
                    log_file=paths.logs / "openbao-target.log", env={"HOME": str(d)})
        wait_until("target openbao listener", lambda: tcp_open(LOOPBACK, TARGET_OPENBAO_PORT), 30)
        log(f"openbao target: bao server up on {target_url()} (pid {pid})")
    init_and_unseal(paths, "target", target_url(), log)


def target_down(paths: Paths) -> None:
    stop_pid_file(target_pid_file(paths), exe_hint="bao", timeout=10)
