"""The sandbox's credentials: random per sandbox, kept in ``<dir>/sevensa.env`` (mode 0600), as on a VPS."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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
    "SANDBOX_DOMAIN": DNS_ZONE,
}


def read(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        values[k.strip()] = v.strip()
    return values


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
