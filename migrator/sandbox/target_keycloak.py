"""The target Keycloak: the cluster's ``infra/keycloak`` Deployment has no pod here, so the sandbox's
Keycloak stand-in runs as a host process on 127.0.0.1:28080 in its place, serving from the target
PostgreSQL for keycloak (127.0.0.1:25435, database ``keycloak``, which the migrator creates by copying the
source's; until then it answers errors). The cluster ingress stand-in proxies ``infra/keycloak`` to it.

Its environment is the env file ``<dir>/target-keycloak/keycloak.env`` (mode 0600), as a pod's would come
from its ConfigMap and Secrets. KC_HOSTNAME starts as the cluster-internal name; the migrator's
``keycloak.migrate`` step rewrites that line to the public ``auth.sevensa.test``, and the process
(``keycloak_host.py``) notices the change by itself and restarts, with no signal or restart command.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .layout import DNS_ZONE, LOOPBACK, TARGET_KEYCLOAK_PORT, TARGET_PG_PORTS, TARGET_PG_SUPERUSER, Paths
from .proc import Log, SandboxError, alive, pid_alive, spawn, stop_pid_file, tcp_open

HOST_SCRIPT = Path(__file__).resolve().with_name("keycloak_host.py")
EXE_HINT = "keycloak_host.py"
HOSTNAME_KEY = "KC_HOSTNAME"
#: where the cluster's Keycloak answers inside the cluster, before the migration points it at the public name
INITIAL_HOSTNAME = "keycloak.infra.svc.cluster.local"
PUBLIC_HOSTNAME = f"auth.{DNS_ZONE}"
DATABASE = "keycloak"
#: the Service the platform manifests (migrator/manifests/infra.yaml) give Keycloak, as ns/name
SERVICE = "infra/keycloak"
START_TIMEOUT = 15.0


def url() -> str:
    return f"http://{LOOPBACK}:{TARGET_KEYCLOAK_PORT}"


def pid_file(paths: Paths) -> Path:
    return paths.target_keycloak / "keycloak.pid"


def log_file(paths: Paths) -> Path:
    return paths.logs / "target-keycloak.log"


def running(paths: Paths) -> int | None:
    return pid_alive(pid_file(paths), EXE_HINT)


def env_values(env: dict[str, str]) -> dict[str, str]:
    """The target Keycloak's environment, from the sandbox's credentials (``sevensa.env``)."""
    return {
        HOSTNAME_KEY: INITIAL_HOSTNAME,
        "KC_HOSTNAME_SCHEME": "http",
        "KC_DB_URL_HOST": LOOPBACK,
        "KC_DB_URL_PORT": str(TARGET_PG_PORTS["keycloak"]),
        "KC_DB_URL_DATABASE": DATABASE,
        "KC_DB_USERNAME": TARGET_PG_SUPERUSER,
        "KC_DB_PASSWORD": env["TARGET_PG_PASSWORD"],
        # the same admin as the source's (compose.yaml: KC_BOOTSTRAP_ADMIN_* from KEYCLOAK_ADMIN_*)
        "KC_BOOTSTRAP_ADMIN_USERNAME": env.get("KEYCLOAK_ADMIN_USER") or "admin",
        "KC_BOOTSTRAP_ADMIN_PASSWORD": env["KEYCLOAK_ADMIN_PASSWORD"],
        "SERVICE_NAME": "keycloak",
        "SERVICE_VERSION": "26.0.5",
    }


def _read_keys(path: Path) -> set[str]:
    keys: set[str] = set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            keys.add(line.split("=", 1)[0].strip().removeprefix("export ").strip())
    return keys


def write_env(paths: Paths, env: dict[str, str]) -> bool:
    """Create the env file (0600), or append only the keys it lacks: values already there (KC_HOSTNAME
    after a migration) are kept. True when the file was written."""
    path = paths.target_keycloak_env
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    wanted = env_values(env)
    if path.exists():
        text = path.read_text(encoding="utf-8")
        missing = {k: v for k, v in wanted.items() if k not in _read_keys(path)}
        if not missing:
            os.chmod(path, 0o600)
            return False
        text = (text if text.endswith("\n") or not text else text + "\n") + "".join(
            f"{k}={v}\n" for k, v in missing.items())
    else:
        text = ("# target Keycloak (stands for the cluster's infra/keycloak pod). KEY=value; the process\n"
                "# restarts by itself when this file changes. Secrets: keep mode 0600, never commit.\n"
                + "".join(f"{k}={v}\n" for k, v in wanted.items()))
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return True


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def up(paths: Paths, env: dict[str, str], log: Log) -> int:
    """Start it (idempotent); return its pid once it listens on 127.0.0.1:28080."""
    write_env(paths, env)
    pid = running(paths)
    if pid is not None:
        log(f"target keycloak: already running (pid {pid})")
        return pid
    if tcp_open(LOOPBACK, TARGET_KEYCLOAK_PORT):
        raise SandboxError(f"{LOOPBACK}:{TARGET_KEYCLOAK_PORT} is taken by another process")
    # argv carries the env file's path only; the secrets stay in the file
    pid = spawn([sys.executable, HOST_SCRIPT, str(TARGET_KEYCLOAK_PORT), paths.target_keycloak_env, LOOPBACK],
                pid_file=pid_file(paths), log_file=log_file(paths), cwd=paths.target_keycloak)

    deadline = time.monotonic() + START_TIMEOUT
    while not tcp_open(LOOPBACK, TARGET_KEYCLOAK_PORT, 0.2):
        if not alive(pid) or time.monotonic() > deadline:
            stop_pid_file(pid_file(paths), exe_hint=EXE_HINT, timeout=5)
            raise SandboxError(f"target keycloak did not listen on {url()} within {START_TIMEOUT}s:\n"
                               f"{_tail(log_file(paths))}")
        time.sleep(0.05)
    log(f"target keycloak: up on {url()} (pid {pid}), env file {paths.target_keycloak_env}")
    return pid


def down(paths: Paths) -> None:
    stop_pid_file(pid_file(paths), exe_hint=EXE_HINT, timeout=5)
