"""MariaDB and Redis servers run on this machine (Debian's mariadb-server and redis-server): the target
data plane's StatefulSets for WPCS's WordPress database and RentGuy's Redis, and the tests' servers.

Passwords never go into argv: MariaDB's root password is set by SQL on the client's stdin; Redis reads
`requirepass` from a 0600 config file.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from .proc import SandboxError, alive, read_pid, spawn, stop_pid, tcp_open, wait_until

MARIADB_OS_USER = "mysql"
REDIS_OS_USER = "redis"


def _owner(path: Path, user: str) -> None:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _sql_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


# --- MariaDB ---------------------------------------------------------------------------------------

def mariadb_pid(base: Path) -> int | None:
    pid = read_pid(base / "mariadbd.pid")
    return pid if pid is not None and alive(pid) else None


def mariadb_up(base: Path, port: int, root_password: str, host: str = "127.0.0.1", timeout: float = 60) -> None:
    """A MariaDB server with its data under ``base``, on host:port; root@127.0.0.1 has ``root_password``."""
    base.mkdir(parents=True, exist_ok=True)
    _owner(base, MARIADB_OS_USER)
    data, tmp = base / "data", base / "tmp"
    tmp.mkdir(exist_ok=True)
    _owner(tmp, MARIADB_OS_USER)
    fresh = not (data / "mysql").is_dir()
    if fresh:
        if data.exists():
            shutil.rmtree(data)
        cp = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", f"--user={MARIADB_OS_USER}",
                             "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
                             "--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M", f"--tmpdir={tmp}"],
                            capture_output=True, timeout=120, check=False)
        if cp.returncode != 0:
            raise SandboxError(f"mariadb-install-db in {base} failed: {cp.stderr.decode(errors='replace')[-500:]}")
    if mariadb_pid(base) is None:
        if tcp_open(host, port):
            raise SandboxError(f"{host}:{port} is taken by another process")
        spawn(["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={base / 'mysqld.sock'}",
                          f"--port={port}", f"--bind-address={host}", f"--user={MARIADB_OS_USER}",
                          "--skip-name-resolve", f"--pid-file={base / 'mysqld.pid'}",
                          "--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M", "--event-scheduler=OFF",
                          "--innodb-flush-log-at-trx-commit=2", "--skip-log-bin", f"--tmpdir={tmp}"],
              pid_file=base / "mariadbd.pid", log_file=base / "mariadbd.log")
        wait_until(f"mariadb on {host}:{port}", lambda: tcp_open(host, port) and (base / "mysqld.sock").exists(),
                   timeout)
    if fresh:
        pw = _sql_literal(root_password)
        # Over the socket as root (no password yet); the password on stdin, never in argv.
        sql = (f"ALTER USER 'root'@'localhost' IDENTIFIED BY {pw};\n"
               f"CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY {pw};\n"
               "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n"
               "DROP USER IF EXISTS 'root'@'::1';\nFLUSH PRIVILEGES;\n")
        cp = subprocess.run(["mariadb", "--no-defaults", f"--socket={base / 'mysqld.sock'}", "-u", "root"],
                            input=sql.encode(), capture_output=True, timeout=60, check=False)
        if cp.returncode != 0:
            raise SandboxError(f"mariadb root password in {base}: {cp.stderr.decode(errors='replace')[-300:]}")


def mariadb_down(base: Path) -> None:
    pid = mariadb_pid(base)
    if pid is not None:
        stop_pid(pid, timeout=20)


# --- Redis -----------------------------------------------------------------------------------------

def redis_pid(base: Path) -> int | None:
    pid = read_pid(base / "redis.pid")
    return pid if pid is not None and alive(pid) else None


def redis_up(base: Path, port: int, password: str, host: str = "127.0.0.1", timeout: float = 30) -> None:
    base.mkdir(parents=True, exist_ok=True)
    conf = base / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"bind {host}\nport {port}\ndir {base}\nlogfile {base / 'redis.log'}\n"
                 "daemonize no\nappendonly yes\nsave \"\"\nprotected-mode yes\n"
                 f"requirepass \"{password}\"\n")
    if redis_pid(base) is None:
        if tcp_open(host, port):
            raise SandboxError(f"{host}:{port} is taken by another process")
        spawn(["redis-server", str(conf)], pid_file=base / "redis.pid", log_file=base / "redis.out")
        wait_until(f"redis on {host}:{port}", lambda: tcp_open(host, port) and redis_pid(base) is not None, timeout)


def redis_down(base: Path) -> None:
    pid = redis_pid(base)
    if pid is not None:
        stop_pid(pid, timeout=10)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
