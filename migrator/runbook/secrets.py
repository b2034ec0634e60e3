"""Resolving secret references (env var, file, OpenBao path). Values are registered for redaction."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from migrator import redact
from migrator.errors import InputError, PermanentError, TemporaryError
from migrator.runbook.envfile import read_env_file
from migrator.runbook.model import EnvSecret, FileSecret, OpenBaoSecret, SecretRef


def describe(ref: SecretRef) -> str:
    if isinstance(ref, EnvSecret):
        return f"env var {ref.env}"
    if isinstance(ref, FileSecret):
        return f"file {ref.file}" + (f" key {ref.key}" if ref.key else "")
    return f"OpenBao {ref.openbao.mount}/{ref.openbao.path}#{ref.openbao.key}"


def resolve_local(ref: EnvSecret | FileSecret, base: Path) -> str:
    """Resolve an env or file reference; raises ValueError with what is missing (for validation)."""
    if isinstance(ref, EnvSecret):
        value = os.environ.get(ref.env)
        if value is None:
            raise ValueError(f"environment variable {ref.env} is not set")
    else:
        path = Path(os.path.expanduser(ref.file))
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ValueError(f"file {path} does not exist")
        if ref.key is None:
            value = path.read_text(encoding="utf-8").rstrip("\n")
        else:
            values = read_env_file(path)
            if ref.key not in values:
                raise ValueError(f"key {ref.key} not found in {path}")
            value = values[ref.key]
    if len(value) < 4:
        raise ValueError("the secret is shorter than 4 characters (too short to be masked in logs)")
    redact.register(value)
    return value


class SecretResolver:
    """Resolves the runbook's secrets on first use and caches them for the run."""

    def __init__(self, refs: dict[str, SecretRef], base: Path, openbao_client: Any = None) -> None:
        self._refs = refs
        self._base = base
        self._cache: dict[str, str] = {}
        self._openbao_client = openbao_client  # a callable returning an hvac.Client, set by the engine

    def names(self) -> list[str]:
        return sorted(self._refs)

    def get(self, name: str) -> str:
        if name in self._cache:
            return self._cache[name]
        ref = self._refs.get(name)
        if ref is None:
            raise InputError(f"secret {name!r} is not defined in the runbook's secrets")
        if isinstance(ref, OpenBaoSecret):
            value = self._from_openbao(name, ref)
        else:
            try:
                value = resolve_local(ref, self._base)
            except ValueError as exc:
                raise PermanentError(f"secret {name}: {exc}") from None
        self._cache[name] = value
        return value

    def _from_openbao(self, name: str, ref: OpenBaoSecret) -> str:
        if self._openbao_client is None:
            raise PermanentError(f"secret {name}: no OpenBao configured (environment.openbao.source)")
        client = self._openbao_client()
        try:
            resp = client.secrets.kv.v2.read_secret_version(
                path=ref.openbao.path, mount_point=ref.openbao.mount, raise_on_deleted_version=True
            )
        except Exception as exc:  # hvac raises many types; connection errors are worth a retry
            if exc.__class__.__name__ in {"ConnectionError", "Timeout", "ReadTimeout"}:
                raise TemporaryError(f"secret {name}: OpenBao unreachable") from None
            raise PermanentError(f"secret {name}: cannot read {describe(ref)}: {exc.__class__.__name__}") from None
        data = resp.get("data", {}).get("data", {})
        if ref.openbao.key not in data:
            raise PermanentError(f"secret {name}: key {ref.openbao.key} not found at {describe(ref)}")
        value = str(data[ref.openbao.key])
        redact.register(value)
        return value
