"""A real local PostgreSQL (run as the `postgres` OS user) holding Keycloak-like databases, and the
sandbox's Keycloak stand-in serving source and target from them on 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from migrator import redact
from migrator.sandbox.seed_sql import keycloak as keycloak_seed
from tests.openbao.baoserver import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
STANDIN = Path(__file__).with_name("standin.py")
ADMIN_PASSWORD = "canary-kc-admin-" + secrets.token_hex(6)
SMOKE_SECRET = "canary-kc-smoke-" + secrets.token_hex(6)


def as_postgres(*argv: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=60)


@dataclass
class Postgres:
    directory: Path
    port: int

    def psql(self, db: str, sql: str) -> str:
        return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                               str(self.port), "-U", "postgres", "-d", db], input=sql, capture_output=True,
                              text=True, check=True, timeout=60).stdout.strip()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL 15 server binaries or runuser not available")
    directory = Path(tempfile.mkdtemp(prefix="kc-pg-"))
    shutil.chown(directory, "postgres", "postgres")
    data, port = directory / "data", free_port()
    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-t", "30", "-l", str(directory / "pg.log"), "-o",
                f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield Postgres(directory, port)
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop")
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class StandIn:
    port: int
    env_file: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stand-in exited {self.proc.returncode}")
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2).read()  # noqa: S310 - loopback
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError("stand-in not answering")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_standin(directory: Path, pg: Postgres, db: str, hostname: str) -> StandIn:
    directory.mkdir(parents=True, exist_ok=True)
    env_file = directory / "keycloak.env"
    env_file.write_text(f"# target Keycloak\nKC_HOSTNAME={hostname}\nKC_HOSTNAME_SCHEME=http\n"
                        f"KC_DB_URL_HOST=127.0.0.1\nKC_DB_URL_PORT={pg.port}\nKC_DB_URL_DATABASE={db}\n"
                        "KC_DB_USERNAME=postgres\nKC_BOOTSTRAP_ADMIN_USERNAME=admin\n")
    env_file.chmod(0o600)
    port = free_port()
    # The admin password goes in the environment, not in argv nor (here) in the env file.
    env = {**os.environ, "KC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD}
    log = (directory / "standin.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(STANDIN), str(port), str(env_file)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    standin = StandIn(port, env_file, proc)
    standin.wait()
    return standin


@dataclass
class KeycloakPair:
    pg: Postgres
    source: StandIn
    target: StandIn
    src_db: str
    tgt_db: str


@pytest.fixture
def keycloaks(postgres: Postgres, tmp_path: Path) -> Iterator[KeycloakPair]:
    """Source on auth.old.test with a seeded database; target with an empty one (the copy fills it)."""
    suffix = secrets.token_hex(4)
    src_db, tgt_db = f"kc_src_{suffix}", f"kc_tgt_{suffix}"
    postgres.psql("postgres", f"CREATE DATABASE {src_db}; CREATE DATABASE {tgt_db};")
    postgres.psql(src_db, keycloak_seed(1, SMOKE_SECRET))
    source = start_standin(tmp_path / "kc-src", postgres, src_db, "auth.old.test")
    target = start_standin(tmp_path / "kc-tgt", postgres, tgt_db, "auth.old.test")
    try:
        yield KeycloakPair(postgres, source, target, src_db, tgt_db)
    finally:
        source.stop()
        target.stop()
        redact.clear()
