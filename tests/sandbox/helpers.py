"""Helpers for the sandbox's own tests."""

from __future__ import annotations

from pathlib import Path

from migrator.sandbox import envfile
from migrator.sandbox.layout import Paths
from migrator.sandbox.platform import SandboxInfo


def paths_of(info: SandboxInfo) -> Paths:
    return Paths(info.dir)


def env_of(info: SandboxInfo) -> dict[str, str]:
    return envfile.read(Path(info.facts["env_file"]))
