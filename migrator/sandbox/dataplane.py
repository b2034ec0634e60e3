"""The target data plane: what the cluster's StatefulSets' pods would hold, served by real servers on the
host because no pod runs here: one PostgreSQL 15 cluster per database (empty: the migrator creates the app
databases), WPCS's MariaDB and RentGuy's Redis (Debian's servers, empty), and the n8n and Grafana
stand-ins reading their claims' storage on the node (the claims themselves are real: see layout.pvc_dir). (The target OpenBao lives in openbao.py.)"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import hoststores
from .layout import (
    LOOPBACK,
    STANDINS_DIR,
    TARGET_APPS,
    TARGET_MYSQL_PORT,
    TARGET_PG_PORTS,
    TARGET_PG_SUPERUSER,
    TARGET_REDIS_PORT,
    Paths,
)
from .proc import (
    Log,
    SandboxError,
    alive,
    pid_alive,
    read_pid,
    run,
    spawn,
    stop_pid,
    stop_pid_file,
    tcp_open,
    wait_until,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"


def cluster_dir(paths: Paths, db: str) -> Path:
    return paths.dataplane / f"pg-{db}"


def data_dir(paths: Paths, db: str) -> Path:
    return cluster_dir(paths, db) / "data"


def postmaster_pid(paths: Paths, db: str) -> int | None:
    pid = read_pid(data_dir(paths, db) / "postmaster.pid")
    return pid if pid is not None and alive(pid, "postgres") else None


def _chown(path: Path) -> None:
    pw = pwd.getpwnam(OS_USER)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def pg_up(paths: Paths, db: str, password: str, log: Log) -> None:
    port = TARGET_PG_PORTS[db]
    base, data = cluster_dir(paths, db), data_dir(paths, db)
    base.mkdir(parents=True, exist_ok=True)
    _chown(base)
    if not (data / "PG_VERSION").exists():
        if data.exists():
            shutil.rmtree(data)
        pwfile = base / ".pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        _chown(pwfile)
        try:
            run([PG_BIN / "initdb", "-D", data, "-U", TARGET_PG_SUPERUSER, f"--pwfile={pwfile}",
                 "--auth-host=scram-sha-256", "--auth-local=peer", "--locale=C.UTF-8", "--encoding=UTF8",
                 "--no-sync"], user=OS_USER, cwd=base, timeout=60)
        finally:
            pwfile.unlink(missing_ok=True)
        with open(data / "postgresql.conf", "a") as fh:
            fh.write(f"\n# sevensa sandbox target data plane\nport = {port}\nlisten_addresses = '{LOOPBACK}'\n"
                     f"unix_socket_directories = '{base}'\nwal_level = logical\nmax_wal_senders = 10\n"
                     "max_replication_slots = 10\njit = off\n")
    if postmaster_pid(paths, db) is None:
        if tcp_open(LOOPBACK, port):
            raise SandboxError(f"{LOOPBACK}:{port} is taken by another process")
        run([PG_BIN / "pg_ctl", "-D", data, "-l", base / "postgres.log", "-w", "-t", "60", "start"],
            user=OS_USER, cwd=base, timeout=90)
        log(f"target postgres {db}: up on {LOOPBACK}:{port}")
    else:
        log(f"target postgres {db}: already running")
    wait_until(f"target postgres {db}", lambda: tcp_open(LOOPBACK, port), 30)


def pg_down(paths: Paths, db: str) -> None:
    pid = postmaster_pid(paths, db)
    if pid is None:
        return
    run([PG_BIN / "pg_ctl", "-D", data_dir(paths, db), "-m", "fast", "-w", "-t", "20", "stop"], user=OS_USER,
        cwd=cluster_dir(paths, db), check=False, timeout=30)
    stop_pid(pid, timeout=5)


def mysql_dir(paths: Paths) -> Path:
    return paths.dataplane / "mariadb-wpcs"


def redis_dir(paths: Paths) -> Path:
    return paths.dataplane / "redis-rentguy"


def _mysql_up(paths: Paths, password: str, log: Log) -> None:
    hoststores.mariadb_up(mysql_dir(paths), TARGET_MYSQL_PORT, password, LOOPBACK)
    log(f"target mariadb wpcs: up on {LOOPBACK}:{TARGET_MYSQL_PORT}")


def _redis_up(paths: Paths, password: str, log: Log) -> None:
    hoststores.redis_up(redis_dir(paths), TARGET_REDIS_PORT, password, LOOPBACK)
    log(f"target redis rentguy: up on {LOOPBACK}:{TARGET_REDIS_PORT}")


def app_pid_file(paths: Paths, service: str) -> Path:
    return paths.dataplane / f"app-{service.replace('/', '_')}.pid"


def apps_up(paths: Paths, log: Log) -> None:
    """The n8n and Grafana stand-ins on the host (their pods are simulated), each reading its claim's storage
    on the node as the pod would see it mounted (nothing there until volume.copy has filled the claim)."""
    for service, (port, pvc, env_key) in TARGET_APPS.items():
        if pid_alive(app_pid_file(paths, service), "app.py") is not None:
            continue
        if tcp_open(LOOPBACK, port):
            raise SandboxError(f"{LOOPBACK}:{port} is taken by another process")
        name = service.split("/", 1)[1]
        spawn([sys.executable, STANDINS_DIR / "app.py"], pid_file=app_pid_file(paths, service),
              log_file=paths.logs / f"target-{name}.log", cwd=STANDINS_DIR,
              env={"SERVICE_NAME": name, "PORT": str(port), env_key: str(paths.pvc_dir(pvc)), "PYTHONPATH": str(STANDINS_DIR)})
        wait_until(f"target {name}", lambda port=port: tcp_open(LOOPBACK, port), 15)  # type: ignore[misc]
        log(f"target {name}: up on {LOOPBACK}:{port}, reading {paths.pvc_dir(pvc)}")


def up(paths: Paths, env: dict[str, str], log: Log) -> None:
    paths.dataplane.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(TARGET_PG_PORTS) + 2) as pool:
        futures = [pool.submit(pg_up, paths, db, env["TARGET_PG_PASSWORD"], log) for db in TARGET_PG_PORTS]
        futures.append(pool.submit(_mysql_up, paths, env["TARGET_MYSQL_PASSWORD"], log))
        futures.append(pool.submit(_redis_up, paths, env["RENTGUY_REDIS_PASSWORD"], log))
    for f in futures:
        f.result()
    apps_up(paths, log)


def down(paths: Paths) -> None:
    for service in TARGET_APPS:
        stop_pid_file(app_pid_file(paths, service), exe_hint="app.py", timeout=5)
    for db in TARGET_PG_PORTS:
        pg_down(paths, db)
    hoststores.mariadb_down(mysql_dir(paths))
    hoststores.redis_down(redis_dir(paths))
