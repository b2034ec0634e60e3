"""Seed the VPS's other stores: WordPress's MariaDB (wpcs-mysql), RentGuy's Redis (rentguy-redis), and the
n8n and Grafana data volumes (their sqlite databases, as the real applications keep them).

Everything goes in through `docker exec -i` with the data on stdin: MariaDB over its socket as root
(unix_socket auth, no password), Redis as a RESP stream whose first command is AUTH (redis-cli --pipe;
no password in any argv).
"""

from __future__ import annotations

import io
import json
import random
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path

from . import seed_wordpress
from .compose import container_id
from .dockerd import docker_cli, docker_env
from .layout import PVC_VOLUMES, SOURCE_MYSQL, SOURCE_REDIS, Paths
from .proc import Log, SandboxError, run

N8N_DB = "database.sqlite"
GRAFANA_DB = "grafana.db"


# --- MariaDB ---------------------------------------------------------------------------------------

def _mariadb(paths: Paths, sql: str, timeout: float = 300) -> str:
    cid = container_id(paths, SOURCE_MYSQL[0])
    cp = run([docker_cli(), "exec", "-i", cid, "mariadb", "-uroot", "--batch", "--skip-column-names"],
             env=docker_env(paths), input=sql.encode(), timeout=timeout)
    return cp.stdout.decode().strip()


def seed_mysql(paths: Paths, scale: int, env: dict[str, str], log: Log) -> None:
    _, db, user, pw_key, _ = SOURCE_MYSQL
    have = _mariadb(paths, f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='{db}' "
                           "AND TABLE_NAME='wp_options';")
    if have == "1" and _mariadb(paths, f"SELECT COUNT(*) FROM `{db}`.wp_options WHERE option_name="
                                       f"'{seed_wordpress.MARKER_OPTION}';") == "1":
        log("seed wpcs-mysql: already seeded")
        return
    started = time.monotonic()
    _mariadb(paths, seed_wordpress.script(db, scale)
             + seed_wordpress.accounts(db, user, env[pw_key], env["WPCS_MYSQL_READER_PASSWORD"]))
    log(f"seed wpcs-mysql: WordPress tables seeded (scale {scale}) in {time.monotonic() - started:.1f}s")


# --- Redis -----------------------------------------------------------------------------------------

def _resp(*args: str | bytes | int) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
    return b"".join(out)


def redis_commands(scale: int) -> list[bytes]:
    """Keys of every type, a third of the sessions with a TTL, a stream with a consumer group."""
    rng = random.Random(5150)
    cmds = [_resp("SET", "sandbox:seeded", f"scale={scale}")]
    for i in range(300 * scale):
        cmds.append(_resp("SET", f"session:{i}", b"tok-" + rng.randbytes(24)))
        if i % 3 == 0:
            cmds.append(_resp("PEXPIRE", f"session:{i}", 86_400_000 + i))
        cmds.append(_resp("HSET", f"booking:{i}", "id", i, "status", rng.choice(["confirmed", "pending", "returned"]),
                          "price", f"{rng.uniform(10, 900):.2f}", "item", f"item-{i % 40}"))
    cmds.append(_resp("RPUSH", "queue:emails", *[f'{{"to":"c{i}@example.test"}}' for i in range(100)]))
    cmds.append(_resp("SADD", "items:available", *[f"item-{i}" for i in range(40)]))
    cmds.append(_resp("ZADD", "ratelimit:api", *[x for i in range(50) for x in (str(i * 1.5), f"client-{i}")]))
    cmds.append(_resp("EXPIRE", "ratelimit:api", 3600))
    cmds.append(_resp("SET", "cache:pricing", json.dumps({"day": 25, "week": 140}), "EX", 7200))
    for i in range(50):
        cmds.append(_resp("XADD", "events:bookings", "*", "booking", i, "kind", "created"))
    cmds.append(_resp("XGROUP", "CREATE", "events:bookings", "mailer", "0"))
    cmds.append(_resp("SELECT", 1))
    cmds.append(_resp("SET", "celery:heartbeat", "1"))
    cmds.append(_resp("HSET", "celery:config", "concurrency", 2))
    return cmds


def seed_redis(paths: Paths, scale: int, env: dict[str, str], log: Log) -> None:
    service, pw_key = SOURCE_REDIS
    cid = container_id(paths, service)
    auth = _resp("AUTH", env[pw_key])
    # redis-cli reads plain commands from stdin when it is not a terminal: AUTH first, the password on stdin
    probe = run([docker_cli(), "exec", "-i", cid, "redis-cli"], env=docker_env(paths), check=False, timeout=30,
                input=f"AUTH {env[pw_key]}\nEXISTS sandbox:seeded\n".encode())
    if probe.stdout.decode().split()[-1:] == ["1"]:
        log("seed rentguy-redis: already seeded")
        return
    data = auth + b"".join(redis_commands(scale))
    cp = run([docker_cli(), "exec", "-i", cid, "redis-cli", "--pipe"], env=docker_env(paths), input=data,
             check=False, timeout=120)
    out = cp.stdout.decode(errors="replace")
    if cp.returncode != 0 or "errors: 0" not in out:
        raise SandboxError(f"seed rentguy-redis failed: {out[-300:]} {cp.stderr.decode(errors='replace')[-300:]}")
    log(f"seed rentguy-redis: {300 * scale * 2 + 8} keys")


# --- n8n and Grafana volumes -----------------------------------------------------------------------

def n8n_database(path: Path, scale: int) -> None:
    """n8n's own sqlite layout (workflow_entity, credentials_entity, settings), with workflows."""
    rng = random.Random(8080)
    db = sqlite3.connect(path)
    db.executescript("""
CREATE TABLE workflow_entity (id varchar(36) PRIMARY KEY, name varchar(128) NOT NULL, active boolean NOT NULL,
  nodes text, connections text, settings text, staticData text, pinData text, versionId char(36),
  triggerCount integer DEFAULT 0, meta text, createdAt datetime, updatedAt datetime);
CREATE TABLE credentials_entity (id varchar(36) PRIMARY KEY, name varchar(128) NOT NULL, data text NOT NULL,
  type varchar(128) NOT NULL, createdAt datetime, updatedAt datetime);
CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL, loadOnStartup boolean NOT NULL DEFAULT 0);
""")
    for i in range(12 * scale):
        nodes = [{"id": f"n{j}", "name": f"Node {j}", "type": rng.choice(["n8n-nodes-base.httpRequest",
                  "n8n-nodes-base.set", "n8n-nodes-base.if"]), "parameters": {"url": f"https://api.example.test/{j}"}}
                 for j in range(rng.randint(2, 6))]
        db.execute("INSERT INTO workflow_entity VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (f"wf{i:04d}", f"Sevensa flow {i}: " + rng.choice(["leads", "invoices", "douane", "alerts"]),
                    i % 2, json.dumps(nodes), json.dumps({}), "{}", None, None, f"v-{i}", i % 3, None,
                    "2024-06-01 10:00:00", "2024-06-02 10:00:00"))
    for i in range(3):
        db.execute("INSERT INTO credentials_entity VALUES (?,?,?,?,?,?)",
                   (f"cred{i}", f"API {i}", "U2FsdGVkX1" + rng.randbytes(48).hex(), "httpHeaderAuth",
                    "2024-06-01", "2024-06-01"))
    db.execute("INSERT INTO settings VALUES ('userManagement.isInstanceOwnerSetUp', 'true', 1)")
    db.commit()
    db.close()


def grafana_database(path: Path, scale: int) -> None:
    """Grafana's own sqlite layout (dashboard, user, data_source), with dashboards."""
    db = sqlite3.connect(path)
    db.executescript("""
CREATE TABLE dashboard (id INTEGER PRIMARY KEY AUTOINCREMENT, version INTEGER NOT NULL, slug TEXT NOT NULL,
  title TEXT NOT NULL, data TEXT NOT NULL, org_id INTEGER NOT NULL, created DATETIME, updated DATETIME,
  uid TEXT, folder_uid TEXT, is_folder INTEGER NOT NULL DEFAULT 0);
CREATE TABLE user (id INTEGER PRIMARY KEY AUTOINCREMENT, login TEXT NOT NULL, email TEXT, name TEXT,
  password TEXT, salt TEXT, is_admin INTEGER NOT NULL, org_id INTEGER NOT NULL);
CREATE TABLE data_source (id INTEGER PRIMARY KEY AUTOINCREMENT, org_id INTEGER, name TEXT, type TEXT, url TEXT);
""")
    titles = ["RentGuy API", "PSRA latency", "WPCS traffic", "Postgres", "Node exporter", "Traefik", "Loki logs"]
    for i in range(len(titles) * scale):
        title = titles[i % len(titles)] + (f" {i // len(titles)}" if i >= len(titles) else "")
        model = {"title": title, "uid": f"dash-{i:03d}", "panels": [{"id": p, "type": "timeseries",
                 "targets": [{"expr": f"rate(http_requests_total[{p + 1}m])"}]} for p in range(4)]}
        db.execute("INSERT INTO dashboard (version, slug, title, data, org_id, created, updated, uid, folder_uid) "
                   "VALUES (?,?,?,?,1,'2024-06-01','2024-06-02',?,?)",
                   (1 + i % 4, title.lower().replace(" ", "-"), title, json.dumps(model), f"dash-{i:03d}", None))
    db.execute("INSERT INTO user (login, email, name, password, salt, is_admin, org_id) VALUES "
               "('admin','admin@sevensa.test','admin','0f2c...hashed','salt1',1,1), "
               "('viewer','ops@sevensa.test','Ops','9a1b...hashed','salt2',0,1)")
    db.execute("INSERT INTO data_source (org_id, name, type, url) VALUES (1,'Prometheus','prometheus',"
               "'http://prometheus:9090'), (1,'Loki','loki','http://loki:3100')")
    db.commit()
    db.close()


def _volume_tar(files: dict[str, bytes], dirs: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1717200000
            tar.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1717200000
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _seed_app_volume(paths: Paths, pvc: str, db_name: str, make: object, extra: dict[str, bytes], dirs: list[str],
                     scale: int, log: Log) -> None:
    _, service, mount = PVC_VOLUMES[pvc]
    cid = container_id(paths, service)
    env = docker_env(paths)
    if run([docker_cli(), "exec", cid, "test", "-f", f"{mount}/{db_name}"], env=env, check=False,
           timeout=30).returncode == 0:
        log(f"seed {pvc}: already seeded")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / db_name
        make(path, scale)  # type: ignore[operator]
        files = {db_name: path.read_bytes(), **extra}
    run([docker_cli(), "cp", "-a", "-", f"{cid}:{mount}"], env=env, input=_volume_tar(files, dirs), timeout=120)
    log(f"seed {pvc}: {db_name} and {len(extra)} more file(s)")


def seed_n8n(paths: Paths, scale: int, log: Log) -> None:
    _seed_app_volume(paths, "ai-n8n-data", N8N_DB, n8n_database,
                     {"nodes/package.json": b'{"name":"installed-nodes","dependencies":{}}\n',
                      "binaryData/meta/wf0001.json": b'{"mimeType":"application/pdf"}\n',
                      "binaryData/wf0001/blob.pdf": b"%PDF-1.4\n" + bytes(range(256)) * 8},
                     ["nodes", "binaryData", "binaryData/meta", "binaryData/wf0001"], scale, log)


def seed_grafana(paths: Paths, scale: int, log: Log) -> None:
    _seed_app_volume(paths, "grafana-data", GRAFANA_DB, grafana_database,
                     {"plugins/.keep": b"", "png/.keep": b""}, ["plugins", "png", "csv"], scale, log)
