"""mysql.copy and mysql.verify between two real MariaDB servers, with WordPress's tables."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any

import pymysql
import pytest

from migrator.adapters.mysql import defaults_file, query
from migrator.sandbox import seed_wordpress
from tests.stores.conftest import CANARY, SECRETS, Server, my_conn
from tests.util import engine, migrate, write_runbook

APP_PW = "canary-wp-app-Qz81"
READER_PW = "canary-wp-reader-Lm20"
USERS = ["wpcs@%", "wp_reporting@%"]


def _seed(src: Server, db: str) -> None:
    c = my_conn(src)
    with contextlib.closing(pymysql.connect(host=c.host, port=c.port, user=c.user, password=c.password)) as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{db}`")
        conn.cursor().execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci")
    sql = seed_wordpress.script(db, 1) + seed_wordpress.accounts(db, "wpcs", APP_PW, READER_PW)
    with defaults_file(my_conn(src)) as cnf:
        cp = subprocess.run(["mariadb", f"--defaults-extra-file={cnf}", "--protocol=tcp", "-h", "127.0.0.1",
                             "-P", str(src.port)], input=sql.encode(), capture_output=True, check=False)
    assert cp.returncode == 0, cp.stderr.decode()


def _params(db: str, target_db: str, **extra: Any) -> dict[str, Any]:
    return {"source": {"endpoint": "src-my", "database": db, "password": "${secrets.pw}"},
            "target": {"endpoint": "wpcs-mysql", "database": target_db, "password": "${secrets.pw}"},
            "users": USERS, **extra}


def _runbook(tmp: Path, src: Server, dst: Server, db: str, target_db: str) -> Path:
    env = {"target": {"ingress_address": "127.0.0.1", "data_access": "endpoint",
                      "endpoints": {"src-my": src.endpoint(), "wpcs-mysql": dst.endpoint()}}}
    return write_runbook(tmp, {1: [
        {"id": "copy", "uses": "mysql.copy", "with": _params(db, target_db)},
        {"id": "parity", "uses": "mysql.verify", "needs": ["copy"], "with": _params(db, target_db),
         "gate": {"timeout": 10, "interval": 1}},
    ]}, environment=env, secrets=SECRETS)


def _count(s: Server, sql: str, db: str | None = None) -> Any:
    return query(my_conn(s, db), sql)[0][0]


def _locked(dst: Server, user: str) -> bool:
    v = _count(dst, f"SELECT JSON_VALUE(Priv, '$.account_locked') FROM mysql.global_priv WHERE User = '{user}'")
    return str(v) in ("true", "1")


def test_copy_verify_accounts_and_rollback(mariadbs: tuple[Server, Server], tmp_path: Path,
                                           canary_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = mariadbs
    _seed(src, "wp")
    argvs: list[list[str]] = []
    real_popen = subprocess.Popen

    def spy(argv: Any, *a: Any, **kw: Any) -> Any:
        argvs.append([str(x) for x in argv])
        return real_popen(argv, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", spy)
    eng = engine(_runbook(tmp_path, src, dst, "wp", "wp_copy"))
    assert eng.run() == 2
    monkeypatch.setattr(subprocess, "Popen", real_popen)
    # The password reached no process's argv (the dump and the loader read a 0600 options file).
    assert argvs and not any(CANARY in " ".join(a) or APP_PW in " ".join(a) for a in argvs)
    assert any("--single-transaction" in a for a in argvs)
    for table in ("wp_posts", "wp_users", "wp_options", "wp_postmeta", "wp_comments", "wp_term_relationships"):
        assert _count(dst, f"SELECT COUNT(*) FROM {table}", "wp_copy") == _count(src, f"SELECT COUNT(*) FROM {table}", "wp")
    assert _count(dst, "SELECT COUNT(*) FROM wp_posts", "wp_copy") == 200
    # Routines, triggers and events came along.
    progs = {r[0] for r in query(my_conn(dst), "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE "
                                 "ROUTINE_SCHEMA='wp_copy' UNION SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                                 "WHERE TRIGGER_SCHEMA='wp_copy' UNION SELECT EVENT_NAME FROM information_schema.EVENTS "
                                 "WHERE EVENT_SCHEMA='wp_copy'")}
    assert progs == {"wp_recount_comments", "wp_comments_count", "wp_purge_transients"}
    # The application's account logs in on the target with its own password, its grants renamed to wp_copy.
    with contextlib.closing(pymysql.connect(host="127.0.0.1", port=dst.port, user="wpcs", password=APP_PW,
                                            database="wp_copy")) as conn, conn.cursor() as cur:
        cur.execute("SELECT option_value FROM wp_options WHERE option_name = 'blogname'")
        assert cur.fetchall() == (("WPCS",),)
    assert not _locked(dst, "wpcs")
    # No secret and no password hash in the state or the journal.
    hash_ = str(_count(src, "SELECT authentication_string FROM mysql.user WHERE User = 'wpcs'"))
    for f in (tmp_path / "state").iterdir():
        text = f.read_text()
        assert CANARY not in text and APP_PW not in text and hash_ not in text
    rep = eng.state.steps["parity"].report
    assert rep["tables"] == 13 and rep["rows"] > 1000

    # The gate sees a changed row and names its table.
    query(my_conn(dst, "wp_copy"), "UPDATE wp_posts SET post_title = 'changed' WHERE ID = 7")
    problems, _ = _compare(src, dst)
    assert problems == ["wp_posts: the rows' digests differ", "CHECKSUM TABLE differs: wp_posts"]

    # Rollback drops the database and the accounts it created.
    eng.rollback(step_id="copy", cascade=True)
    assert query(my_conn(dst), "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='wp_copy'") == []
    assert query(my_conn(dst), "SELECT 1 FROM mysql.user WHERE User IN ('wpcs', 'wp_reporting')") == []


def _compare(src: Server, dst: Server, source_db: str = "wp",
             target_db: str = "wp_copy") -> tuple[list[str], dict[str, Any]]:
    from migrator.adapters.mysql import MySource
    from migrator.steps.mysql import MyParams, compare

    p = MyParams.model_validate({"source": {"host": "127.0.0.1", "port": src.port, "database": source_db,
                                            "password": CANARY},
                                 "target": {"endpoint": "x", "database": target_db, "password": CANARY},
                                 "users": USERS})
    return compare(MySource.local(my_conn(src)), my_conn(dst), p)


def test_crash_mid_load_keeps_logins_out_then_resume(mariadbs: tuple[Server, Server], tmp_path: Path,
                                                     canary_env: dict[str, str]) -> None:
    src, dst = mariadbs
    _seed(src, "wp2")
    rb = _runbook(tmp_path, src, dst, "wp2", "wp2_copy")
    env = {"STORE_PASSWORD": CANARY}
    cp = migrate("run", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"), "--yes", env={**env, "MIGRATE_FAILPOINTS": "copy:after-table@4=crash"})
    assert cp.returncode != 0
    # Half loaded: the tables past the fourth are not there, and the application's account is locked.
    assert int(_count(dst, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='wp2_copy'")) < 13
    assert _locked(dst, "wpcs")
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="127.0.0.1", port=dst.port, user="wpcs", password=APP_PW, database="wp2_copy")
    cp = migrate("resume", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"), "--yes", env=env)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert not _locked(dst, "wpcs")
    assert _count(dst, "SELECT COUNT(*) FROM wp_comments", "wp2_copy") == 300
    # Restarting is harmless: the half-loaded database (created by this step) was dropped and loaded again
    # from a new snapshot, so every table, row digest, CHECKSUM and stored program matches the source.
    problems, figures = _compare(src, dst, "wp2", "wp2_copy")
    assert problems == [] and figures["tables"] == 13, (problems, figures)


def test_existing_database_is_refused(mariadbs: tuple[Server, Server], tmp_path: Path,
                                      canary_env: dict[str, str]) -> None:
    src, dst = mariadbs
    _seed(src, "wp3")
    query(my_conn(dst), "CREATE DATABASE IF NOT EXISTS busy")
    query(my_conn(dst, "busy"), "CREATE TABLE IF NOT EXISTS t (id int)")
    rb = _runbook(tmp_path, src, dst, "wp3", "busy")
    cp = migrate("run", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"), "--yes", env={"STORE_PASSWORD": CANARY})
    assert cp.returncode == 1
    assert "already has tables and was not created by this step" in cp.stderr
    assert CANARY not in cp.stderr + cp.stdout
