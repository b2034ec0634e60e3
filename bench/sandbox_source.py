"""db_copy's sandbox source: a throw-away database `bench_copy` in the sandbox VPS's `rentguy-db` container.

Everything on the VPS side goes the way migrator goes: one SSH session (runbooks/sandbox.yaml's
environment.source.ssh), the Docker API over it, pg tools run inside the container by `docker exec`
(the container's own pgbench, pg_dump and psql, over its unix socket). Only `bench_copy` is created and
dropped there; the sandbox itself is never stopped, restarted or reconfigured.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from migrator.adapters.pgsource import PgSource, local_tool
from migrator.adapters.postgres import PgConn, clean_env, passfile
from tests.postgres.seed import SEED

REPO = Path(__file__).resolve().parents[1]
RUNBOOK = REPO / "runbooks" / "sandbox.yaml"
SERVICE = "rentguy-db"
USER = "rentguy"  # the container's superuser (POSTGRES_USER)
PASSWORD_KEY = "RENTGUY_DB_PASSWORD"  # in the sandbox's env file (state/sandbox/sevensa.env)
DB = "bench_copy"
TARGET_ENDPOINT = "bench-copy-target"
TARGET_SECRET_ENV = "BENCH_COPY_TARGET_PASSWORD"
PATH_KEYS = {"key_file", "known_hosts", "kubeconfig", "config_file", "file"}
CHUNK = 1 << 18

# The mixed types without the cluster-wide role: objects belong to the container's own user.
SANDBOX_SEED = re.sub(r"DO \$\$ BEGIN.*?END \$\$;\n", "", SEED, count=1, flags=re.S).replace("app_owner", USER)


def sandbox_up() -> str | None:
    """Why the sandbox cannot be the source (None: it can): sshd, dockerd and rentguy-db must be running."""
    try:
        from migrator.sandbox import platform

        info = platform.status().to_dict()
    except Exception as exc:  # no sandbox extras, no state: the local path
        return f"sandbox status unavailable ({exc.__class__.__name__}: {exc})"
    comps = info.get("components", {})
    for name in ("dockerd", "sshd"):
        if not comps.get(name, {}).get("running"):
            return f"sandbox {name} not running"
    state = info.get("compose", {}).get("services", {}).get(SERVICE, {}).get("state")
    if state != "running":
        return f"sandbox {SERVICE} is {state or 'absent'}"
    return None


def _absolute(node: Any, rb_dir: Path, key: str | None = None) -> Any:
    """The runbook's environment with `${runbook.dir}` expanded and relative file paths made absolute."""
    if isinstance(node, dict):
        return {k: _absolute(v, rb_dir, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolute(v, rb_dir) for v in node]
    if isinstance(node, str):
        node = node.replace("${runbook.dir}", str(rb_dir))
        if key in PATH_KEYS and not os.path.isabs(os.path.expanduser(node)):
            node = str((rb_dir / node).resolve())
    return node


def _names(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_names(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_names(v) for v in node)) if node else set()
    return {node} if isinstance(node, str) else set()


def sandbox_environment(target: PgConn) -> tuple[dict[str, Any], dict[str, Any]]:
    """runbooks/sandbox.yaml's environment (paths absolute) plus an endpoint for the bench target, and the
    secrets that environment names (plus the bench target's password, from this process's env)."""
    doc = yaml.safe_load(RUNBOOK.read_text())
    rb_dir = RUNBOOK.parent.resolve()
    env = _absolute(copy.deepcopy(doc["environment"]), rb_dir)
    env["target"]["endpoints"][TARGET_ENDPOINT] = {"host": target.host, "port": target.port}
    all_secrets = doc.get("secrets") or {}
    used = _names(env) & set(all_secrets)
    secrets = {name: _absolute(copy.deepcopy(all_secrets[name]), rb_dir) for name in sorted(used)}
    secrets["bench_target_pg"] = {"env": TARGET_SECRET_ENV}
    return env, secrets


class SandboxSource:
    """`bench_copy` in rentguy-db, over the sandbox runbook's SSH session and Docker API."""

    def __init__(self, work: Path) -> None:
        from migrator.adapters.docker import DockerRemote
        from migrator.runbook.environment import SourceConfig
        from migrator.sandbox import envfile

        self.work = work
        env, _ = sandbox_environment(PgConn("127.0.0.1", 1, "postgres", "postgres"))
        self.source_cfg = SourceConfig.model_validate(env["source"])
        self.remote = DockerRemote.from_config(self.source_cfg, RUNBOOK.parent.resolve())
        self.ssh = self.remote.ssh
        self.container = self._find()
        if self.container is None or self.container.status != "running":
            raise SystemExit(f"sandbox: {SERVICE} is not running")
        env_file = Path(str(env["source"].get("env_file") or REPO / "state" / "sandbox" / "sevensa.env"))
        self.password = envfile.read(env_file).get(PASSWORD_KEY)
        if not self.password:
            raise SystemExit(f"sandbox: no {PASSWORD_KEY} in {env_file}")
        self.created = False

    def _find(self) -> Any:
        found = [c for c in self.remote.require_project(self.source_cfg.compose_project)
                 if c.labels.get("com.docker.compose.service") == SERVICE]
        return found[0] if found else None

    @property
    def label(self) -> str:
        return f"{DB} in container {self.container.name} on {self.remote.host}"

    def source(self, database: str = DB) -> PgSource:
        return PgSource.container(self.remote, self.container.name, database, USER)

    # -- the source database -------------------------------------------------------------------
    def build(self, scale: int) -> int:
        admin = self.source("postgres")
        admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        self.created = True
        admin.execute(f'CREATE DATABASE "{DB}" OWNER "{USER}"')
        src = self.source()
        src.execute(SANDBOX_SEED)
        src.run(["pgbench", "-i", "-q", "-s", str(scale)])  # the image's own pgbench, in the container
        src.execute("VACUUM ANALYZE")
        return int(src.query(f"SELECT pg_database_size('{DB}')")[0][0])

    def drop(self, wait_s: float = 900) -> None:
        """Drop bench_copy; if the container is down (someone else stopped it), wait for it to come back."""
        deadline = time.monotonic() + wait_s
        while self.created:
            try:
                container = self._find()
                if container is not None and container.status == "running":
                    self.container = container
                    self.source("postgres").execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
                    self.created = False
                    return
                why = f"{SERVICE} is {container.status if container is not None else 'absent'}"
            except Exception as exc:  # the container replaced or the API busy: try again
                why = str(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"sandbox: could not drop {DB} ({why}); drop it by hand in {SERVICE}")
            print(f"sandbox: waiting to drop {DB}: {why}", flush=True)
            time.sleep(10)

    def close(self) -> None:
        try:
            self.drop()
        finally:
            self.remote.close()

    # -- (a) pg_dump -Fc in the container, through the Docker exec stream over SSH, into pg_restore here
    def dump_restore(self, dst: PgConn) -> int:
        env = self.source().env
        with tempfile.TemporaryFile() as err:
            restore = subprocess.Popen([local_tool("pg_restore"), "-h", dst.host, "-p", str(dst.port), "-U", dst.user,
                                        "-d", dst.database, "--no-owner"], stdin=subprocess.PIPE, stderr=err,
                                       env=clean_env({"PGPASSWORD": dst.password or ""}))
            assert restore.stdin is not None
            moved = 0
            with self.remote.exec_stream(self.container.name, ["pg_dump", "-Fc", DB], env=env, user="postgres",
                                         timeout=3600) as s:
                try:
                    while chunk := s.read(CHUNK):
                        restore.stdin.write(chunk)
                        moved += len(chunk)
                finally:
                    restore.stdin.close()
                dump_rc = s.exit_code()
                dump_err = s.stderr_tail()
            restore_rc = restore.wait()
            err.seek(0)
            restore_err = err.read()
        if dump_rc != 0 or restore_rc != 0:
            raise SystemExit(f"dump|restore failed: pg_dump rc={dump_rc} {dump_err.decode()[-300:]} "
                             f"pg_restore rc={restore_rc} {restore_err.decode()[-500:]}")
        return moved

    # -- (b) pgcopydb clone, the source through an SSH tunnel to the container's address -------------
    def container_ip(self) -> str:
        self.container = self._find() or self.container
        nets = self.container.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
        addrs = [n.get("IPAddress") for n in nets.values() if n.get("IPAddress")]
        if not addrs:
            raise SystemExit(f"sandbox: {SERVICE} has no network address")
        return str(addrs[0])

    def pgcopydb(self, dst: PgConn, jobs: int, work: Path) -> None:
        with self.ssh.tunnel(self.container_ip(), 5432) as (host, port):
            src = PgConn(host, port, USER, DB, self.password)
            with passfile(src, dst) as pf:  # passwords in a 0600 passfile, never argv
                proc = subprocess.run(["pgcopydb", "clone", "--source", src.uri(), "--target", dst.uri(), "--dir",
                                       str(work), "--table-jobs", str(jobs), "--index-jobs", str(jobs), "--no-owner"],
                                      env=clean_env({"PGPASSFILE": str(pf)}), capture_output=True)
        if proc.returncode != 0:
            raise SystemExit(f"pgcopydb failed: {proc.stderr.decode()[-800:]}")

    # -- (c) postgres.copy through the engine, with the sandbox runbook's environment ----------------
    def migrator_copy(self, dst: PgConn, target_db: str, jobs: int, work: Path,
                      params: list[str] | None = None) -> dict[str, object]:
        from bench.db_copy import with_params
        from tests.util import engine, write_runbook

        env, secrets = sandbox_environment(dst)
        os.environ[TARGET_SECRET_ENV] = dst.password or ""
        step = {"id": "copy", "uses": "postgres.copy", "timeout": 3600,
                "with": {"source": {"container": SERVICE, "database": DB, "user": USER},
                         "target": {"endpoint": TARGET_ENDPOINT, "database": target_db, "user": dst.user,
                                    "password": "${secrets.bench_target_pg}"},
                         "jobs": jobs}}
        step["with"] = with_params(step["with"], params or [])  # type: ignore[arg-type]
        rb = write_runbook(work, {1: [step]}, name="bench-db-copy", environment=env, secrets=secrets)
        eng = engine(rb)
        eng.run()
        rec = eng.state.steps["copy"]
        if rec.status != "succeeded":
            raise SystemExit(f"postgres.copy did not succeed: {rec.status}")
        return dict(rec.report)
