"""The kubeconfig clients use to reach the stand-in (plain HTTP on loopback, dummy token)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

CONTEXT = "sandbox"
TOKEN = "sandbox-token-not-a-secret"


def render(url: str, namespace: str = "default") -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": {"token": TOKEN}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write(path: Path, url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(url))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
