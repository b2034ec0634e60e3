"""The sandbox's credentials: random per sandbox, kept in ``<dir>/sevensa.env`` (mode 0600), as on a VPS."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from migrator.runbook.envfile import read_env_file

from .layout import DNS_ZONE, Paths

#: key -> how to generate (None: random secret)
KEYS: dict[str, str | None] = {
    "RENTGUY_DB_PASSWORD": None,
    "PSRA_DB_PASSWORD": None,
    "WPCS_DB_PASSWORD": None,
    "KEYCLOAK_DB_PASSWORD": None,
    "KEYCLOAK_ADMIN_USER": "admin",
    "KEYCLOAK_ADMIN_PASSWORD": None,
    "KC_HOSTNAME": f"auth.{DNS_ZONE}",
    "MIGRATOR_SMOKE_CLIENT_SECRET": None,
    "RENTGUY_JWT_SECRET": None,
    "N8N_ENCRYPTION_KEY": None,
    "ANTHROPIC_API_KEY": "sk-ant-sandbox-",
    "GRAFANA_ADMIN_PASSWORD": None,
    "TARGET_PG_PASSWORD": None,
    "WPCS_MYSQL_ROOT_PASSWORD": None,
    "WPCS_MYSQL_PASSWORD": None,
    "WPCS_MYSQL_READER_PASSWORD": None,
    "TARGET_MYSQL_PASSWORD": None,
    "RENTGUY_REDIS_PASSWORD": None,
    "SANDBOX_DOMAIN": DNS_ZONE,
}


# Keys of the env file whose values are not secrets (names and paths): the secret-leak checks skip them.
NOT_SECRET = frozenset({"KC_HOSTNAME", "SANDBOX_DOMAIN", "KEYCLOAK_ADMIN_USER", "OPENBAO_UNSEAL_KEY"})


def read(path: Path) -> dict[str, str]:
    """The env file's values ({} while it does not exist yet)."""
    return read_env_file(path) if path.exists() else {}


def unseal_key_file(paths: Paths) -> Path:
    return paths.openbao / "source-unseal.key"


def ensure_unseal_key(paths: Paths) -> None:
    """The VPS OpenBao's static auto-unseal key (32 random bytes, 0600): it comes back unsealed after
    every restart, like a production OpenBao with a KMS seal, so `compose up` alone restores it."""
    key = unseal_key_file(paths)
    if key.exists():
        return
    paths.openbao.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.openbao, 0o700)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))


def ensure(paths: Paths) -> dict[str, str]:
    """Create or complete the env file; existing values are kept (idempotent)."""
    values = read(paths.env_file)
    changed = not paths.env_file.exists()
    for key, spec in KEYS.items():
        if key in values:
            continue
        changed = True
        if spec is None:
            values[key] = secrets.token_urlsafe(24)
        elif spec.endswith("-"):
            values[key] = spec + secrets.token_urlsafe(24)
        else:
            values[key] = spec
    if values.get("OPENBAO_UNSEAL_KEY") != str(unseal_key_file(paths)):
        values["OPENBAO_UNSEAL_KEY"] = str(unseal_key_file(paths))
        changed = True
    ensure_unseal_key(paths)
    if changed:
        paths.root.mkdir(parents=True, exist_ok=True)
        tmp = paths.env_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# sevensa sandbox credentials (random per sandbox). Never commit.\n")
            for k, v in values.items():
                fh.write(f"{k}={v}\n")
        os.replace(tmp, paths.env_file)
    os.chmod(paths.env_file, 0o600)
    return values
