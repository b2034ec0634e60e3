"""The backup drill against the real sandbox: a target database (copied from the VPS by postgres.copy),
WordPress's MariaDB database and RentGuy's Redis (copied by mysql.copy and redis.copy into the target's
servers), the target OpenBao and a volume directory backed up to a directory and to a real S3 server
(moto's, on 127.0.0.1); a SIGKILL mid-upload resumed without re-uploading what was finished; the canary
S3 secret and the MySQL and Redis passwords nowhere in state, journal, output or argv; a tampered backup
refused with the target untouched; the wiped target restored from S3 and back to parity (table digests,
MySQL row digests, every Redis key's content and TTL, every file's sha256, the OpenBao secret).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import hvac
import pytest

from migrator.adapters.mysql import MyConn
from migrator.adapters.mysql import execute as my_execute
from migrator.adapters.openbao import wait_kv_ready
from migrator.adapters.postgres import PgConn, connect
from migrator.adapters.redis import RedisConn, client, keyspace, summarize
from migrator.sandbox import envfile
from migrator.sandbox.layout import LOOPBACK, SOURCE_MYSQL, SOURCE_REDIS, TARGET_MYSQL_PORT, TARGET_REDIS_PORT
from migrator.steps import volume_manifest as vm
from migrator.steps.backup_stores import mysql_digests
from migrator.steps.postgres import pg_catalog as cat
from migrator.steps.postgres import pg_schema as schema
from tests.openbao.test_canary import ArgvScanner
from tests.util import engine, migrate, write_runbook

pytestmark = pytest.mark.sandbox

DB = "rentguy_backup"
MY_DB = "wordpress_backup"
KV_PATH = "backup-drill/app"


def _digests(conn: PgConn) -> dict[str, tuple[int, str]]:
    q = schema.query_of(conn)
    return cat.digests(q, cat.tables(q))


def _files(root: Path) -> dict[str, tuple[str, str | None]]:
    return {p: (e.kind, e.sha256 or e.link) for p, e in vm.scan(root).entries.items()}


def _redis_state(conn: RedisConn) -> dict[int, Any]:
    """Per database: keys per type, the digest of every key's content, and which keys have a TTL."""
    out = {}
    for db in sorted(keyspace(client(conn))):
        s = summarize(client(conn, db))
        out[db] = (s.by_type, s.digest, sorted(k for k, v in s.keys.items() if v[2] >= 0))
    return out


def _runbook(tmp: Path, info: Any, s3: dict[str, Any], pvc: Path) -> Path:
    f = info.facts
    ssh = f["ssh"]
    rg = next(s for s in f["source_databases"] if s["name"] == "rentguy")
    superuser = f["target_databases"][0]["superuser"]
    bao = f["openbao"]
    environment = {
        "source": {"ssh": {"host": ssh["host"], "port": ssh["port"], "user": ssh["user"], "key_file": ssh["key"],
                           "known_hosts": ssh["known_hosts"]},
                   "address": f["dns"]["vps_address"], "compose_project": f["compose"]["project"]},
        "target": {"ingress_address": f["dns"]["ingress_address"], "data_access": "endpoint",
                   "endpoints": {**{f"{t['name']}-db": {"host": t["host"], "port": t["port"]}
                                    for t in f["target_databases"]},
                                 "wpcs-mysql": {"host": LOOPBACK, "port": TARGET_MYSQL_PORT},
                                 "rentguy-redis": {"host": LOOPBACK, "port": TARGET_REDIS_PORT}},
                   "volume_paths": {"uploads": str(pvc)}},
        "openbao": {"source": {"address": "http://127.0.0.1:18200", "token": "bao_source"},
                    "target": {"address": bao["target"]["address"], "token": "bao_target"}},
    }
    secrets_ = {"target": {"env": "MIG_TARGET_PG"}, "rentguy": {"env": "MIG_RENTGUY"},
                "s3_key": {"env": "MIG_S3_KEY"}, "my_source": {"env": "MIG_MY_SOURCE"},
                "my_target": {"env": "MIG_MY_TARGET"}, "redis": {"env": "MIG_REDIS"}, "s3_secret": {"env": "MIG_S3_SECRET"},
                "bao_source": {"file": bao["source"]["root_token_file"]},
                "bao_target": {"file": bao["target"]["root_token_file"]}, "bao_unseal": {"env": "MIG_BAO_UNSEAL"}}
    s3_to = {"s3": {"endpoint_url": s3["url"], "bucket": s3["bucket"], "prefix": "sevensa/pre-cutover",
                    "access_key_id": "${secrets.s3_key}", "secret_access_key": "${secrets.s3_secret}"}}
    dir_to = {"dir": str(tmp / "backups")}
    restore = {"openbao_unseal_keys": "${secrets.bao_unseal}"}
    return write_runbook(tmp / "rb", {
        1: [{"id": "copy", "uses": "postgres.copy",
             "with": {"source": {"container": rg["service"], "database": rg["db"], "user": rg["user"],
                                 "password": "${secrets.rentguy}"},
                      "target": {"endpoint": "rentguy-db", "database": DB, "user": superuser,
                                 "password": "${secrets.target}"},
                      "owner_map": {rg["user"]: rg["user"]}, "existing": "set-aside"}},
            {"id": "copy-mysql", "uses": "mysql.copy",
             "with": {"source": {"container": SOURCE_MYSQL[0], "database": SOURCE_MYSQL[1], "user": "root",
                                 "password": "${secrets.my_source}"},
                      "target": {"endpoint": "wpcs-mysql", "database": MY_DB, "password": "${secrets.my_target}"}}},
            # merge: the sandbox's target Redis is shared by the session's tests (emptied by the rollback if
            # it was empty before)
            {"id": "copy-redis", "uses": "redis.copy",
             "with": {"source": {"container": SOURCE_REDIS[0], "password": "${secrets.redis}"},
                      "target": {"endpoint": "rentguy-redis", "password": "${secrets.redis}"}, "existing": "merge"}}],
        # on_rollback: delete: the drill's clean-up removes its backups (the default keeps them: test_files)
        2: [{"id": "backup-dir", "uses": "backup.create",
             "with": {"to": dir_to, "volumes": ["uploads"], "on_rollback": "delete"}},
            {"id": "backup-s3", "uses": "backup.create",
             "with": {"to": s3_to, "volumes": ["uploads"], "on_rollback": "delete"}}],
        3: [{"id": "restore-tampered", "uses": "backup.restore",
             "with": {"from": dir_to, "backup_step": "backup-dir", **restore}}],
        4: [{"id": "restore", "uses": "backup.restore", "with": {"from": s3_to, "backup_step": "backup-s3", **restore}}],
    }, environment=environment, secrets=secrets_)


def test_backup_then_restore_a_wiped_target(sandbox: Any, s3_server: dict[str, Any], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    f = sandbox.facts
    values = envfile.read(Path(f["env_file"]))
    rg = next(s for s in f["source_databases"] if s["name"] == "rentguy")
    bao_keys = json.loads(Path(f["openbao"]["target"]["init_file"]).read_text())["keys"]
    # The canary: the S3 secret moto's IAM issued (random, 40 characters), which every request is signed with.
    canary = s3_server["secret_access_key"]
    env = {"MIG_TARGET_PG": values["TARGET_PG_PASSWORD"], "MIG_RENTGUY": values[rg["password_env"]],
           "MIG_S3_KEY": s3_server["access_key_id"], "MIG_S3_SECRET": canary, "MIG_BAO_UNSEAL": json.dumps(bao_keys),
           "MIG_MY_SOURCE": values[SOURCE_MYSQL[4]], "MIG_MY_TARGET": values["TARGET_MYSQL_PASSWORD"],
           "MIG_REDIS": values[SOURCE_REDIS[1]]}
    # The MySQL and Redis passwords are canaries too: sandbox-generated, random.
    canaries = [canary, env["MIG_MY_TARGET"], env["MIG_REDIS"]]
    assert all(len(c) >= 16 for c in canaries)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    pvc = tmp_path / "pvc"
    (pvc / "2026" / "12").mkdir(parents=True)
    (pvc / "2026" / "12" / "invoice.pdf").write_bytes(os.urandom(300_000))
    (pvc / "notes.txt").write_text("hello\n")
    (pvc / "latest").symlink_to("2026/12/invoice.pdf")
    (pvc / "empty-dir").mkdir()
    rb = _runbook(tmp_path, sandbox, s3_server, pvc)
    state = tmp_path / "state"
    tgt = next(t for t in f["target_databases"] if t["name"] == "rentguy")
    conn = PgConn(tgt["host"], tgt["port"], tgt["superuser"], DB, values["TARGET_PG_PASSWORD"])
    my = MyConn(LOOPBACK, TARGET_MYSQL_PORT, "root", env["MIG_MY_TARGET"])
    rd = RedisConn(LOOPBACK, TARGET_REDIS_PORT, env["MIG_REDIS"])
    bao = hvac.Client(url=f["openbao"]["target"]["address"],
                      token=Path(f["openbao"]["target"]["root_token_file"]).read_text().strip())
    mounted = "secret/" not in bao.sys.list_mounted_secrets_engines()["data"]
    if mounted:  # the sandbox's target is empty until phase 2's openbao-migrate
        bao.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        wait_kv_ready(bao, "secret")
    bao.secrets.kv.v2.create_or_update_secret(path=KV_PATH, secret={"v": "before"}, mount_point="secret")
    try:
        engine(rb, state).run(phases=[1])
        before_db, before_files = _digests(conn), _files(pvc)
        assert before_db and sum(n for n, _ in before_db.values()) > 0
        before_my, before_redis = mysql_digests(my, MY_DB), _redis_state(rd)
        assert sum(int(n or 0) for n, _ in before_my.values()) > 1000
        assert sum(sum(by_type.values()) for by_type, _, _ in before_redis.values()) >= 600
        assert any(ttl for _, _, ttl in before_redis.values())

        # Phase 2 under the real CLI: SIGKILLed after the S3 backup's first artefact, then resumed.
        scanner = ArgvScanner(canaries)
        scanner.start()
        try:
            crashed = migrate("--log-level", "debug", "run", "--runbook", str(rb), "--state-dir", str(state), "--phase", "2",
                              env={"MIGRATE_FAILPOINTS": "backup-s3:after-artefact@1=crash"})
            resumed = migrate("--log-level", "debug", "run", "--runbook", str(rb), "--state-dir", str(state), "--phase", "2")
        finally:
            scanner.stop.set()
            scanner.join(timeout=10)
        assert crashed.returncode not in (0, 1, 2), crashed.stderr[-2000:]
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        journal = [json.loads(line) for line in next(state.glob("*.journal.jsonl")).read_text().splitlines()]
        put = [e["key"] for e in journal if e.get("event") == "backup-artefact" and e.get("step") == "backup-s3"]
        skipped = [e["key"] for e in journal if e.get("event") == "backup-artefact-skipped"
                   and e.get("step") == "backup-s3"]
        # pg dump, mysql dump, redis keys, snapshot, volume
        assert skipped == put[:1] and len(put) == len(set(put)) == 5, (put, skipped)
        bucket = s3_server["store"]("sevensa/pre-cutover")
        names = sorted(k.split("/", 1)[1] for k in bucket.keys())
        assert names == ["backup.json", f"mysql/wpcs-mysql/{MY_DB}.sql", "openbao/target.snap",
                         f"postgres/rentguy-db/{DB}.dump", "redis/rentguy-redis.mgrredis", "volumes/uploads.tar"]
        s3_folder = bucket.keys()[0].split("/", 1)[0]
        manifest = json.loads(bucket.read_bytes(f"{s3_folder}/backup.json") or b"{}")
        assert "not_included" not in manifest
        assert {a["kind"] for a in manifest["artefacts"]} == {"postgres", "mysql", "redis", "openbao", "volume"}

        # Canary: not in argv, output, state or journal.
        assert scanner.scans > 3 and scanner.hits == []
        for text in (crashed.stdout, crashed.stderr, resumed.stdout, resumed.stderr):
            assert not any(c in text for c in canaries)
        for path in state.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(c.encode() in data for c in canaries), path

        # Wipe the target: a table's rows, a file changed, one deleted, the OpenBao secret gone.
        first = sorted(before_db)[0]
        with connect(conn) as c:
            schema_name, _, table = first.partition(".")
            c.execute(f'TRUNCATE "{schema_name}"."{table}" CASCADE')
        (pvc / "notes.txt").write_text("overwritten\n")
        (pvc / "2026" / "12" / "invoice.pdf").unlink()
        bao.secrets.kv.v2.delete_metadata_and_all_versions(path=KV_PATH, mount_point="secret")
        wiped = _digests(conn)
        assert wiped != before_db
        busiest = max(before_my, key=lambda t: int(before_my[t][0] or 0))
        my_execute(my, [f"DELETE FROM `{MY_DB}`.`{busiest}`", f"DROP TABLE `{MY_DB}`.`wp_options`"], "wipe")
        r0 = client(rd, 0)
        doomed = [k for i, k in enumerate(r0.scan_iter(count=500)) if i % 2 == 0]
        r0.delete(*doomed)
        r0.set("not-in-the-backup", "x")
        wiped_my, wiped_redis = mysql_digests(my, MY_DB), _redis_state(rd)
        assert wiped_my != before_my and wiped_redis != before_redis

        # A tampered artefact is refused, and nothing is restored from that backup.
        folder = json.loads(migrate("status", "--json", "--runbook", str(rb), "--state-dir", str(state)).stdout)
        dump = next((tmp_path / "backups").rglob(f"{DB}.dump"))
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))
        refused = migrate("run", "--runbook", str(rb), "--state-dir", str(state), "--phase", "3")
        assert refused.returncode != 0 and "refusing to restore" in refused.stdout + refused.stderr, folder
        assert _digests(conn) == wiped and not (pvc / "2026" / "12" / "invoice.pdf").exists()
        assert mysql_digests(my, MY_DB) == wiped_my and _redis_state(rd) == wiped_redis

        # The restore from S3 brings it all back.
        eng = engine(rb, state)
        eng.run(phases=[4])
        assert _digests(conn) == before_db
        assert _files(pvc) == before_files
        assert mysql_digests(my, MY_DB) == before_my
        assert _redis_state(rd) == before_redis
        counts = eng.state.steps["restore"].facts["restored"]["redis/rentguy-redis.mgrredis"]
        n_keys = sum(sum(by_type.values()) for by_type, _, _ in before_redis.values())
        assert counts["restored"] + counts["expired"] == n_keys and counts["with_ttl"] > 0, counts
        read = bao.secrets.kv.v2.read_secret_version(path=KV_PATH, mount_point="secret", raise_on_deleted_version=True)
        assert read["data"]["data"] == {"v": "before"}
    finally:
        bao.secrets.kv.v2.delete_metadata_and_all_versions(path=KV_PATH, mount_point="secret")
        if mounted:
            bao.sys.disable_secrets_engine("secret")
        engine(rb, state).rollback(phase=2, cascade=True)
        engine(rb, state).rollback(phase=1, cascade=True)
    assert not list((tmp_path / "backups").rglob("*.dump"))
    assert bucket.keys() == []
