"""The MySQL and Redis artefacts of a backup: the targets of the runbook's mysql.copy and redis.copy steps.

- mysql: `mariadb-dump` (or `mysqldump`) run here against the target endpoint, as mysql.copy reaches it
  (one consistent `--single-transaction` snapshot, routines, triggers, events; the password in a 0600
  defaults file, never argv). Each table's row count and row digest (adapters.mysql.digest_sql) is
  recorded beside it; the restore drops the database, creates it again with its character set and
  loads the dump; its verify computes the digests again and compares.
- redis: every key of every database holding keys on the target, with its DUMP payload (the server's
  own type-independent serialisation) and its expiry, in the file format below; the restore empties
  each database the file holds and RESTOREs every key with REPLACE and what is left of its TTL (a key
  whose expiry passed meanwhile is skipped and counted); its verify compares each database's key count
  and every key's content digest (read through its type's commands) with the ones in the file.

The Redis file ("MGRREDIS" format 1), every integer big-endian:
    header   b"MGRREDIS" u8 version(=1)
    db       b"D" u32 db-number                    (the keys that follow belong to it)
    key      b"K" u32 len, key bytes, u8 len, type (ascii), 32 bytes sha256 of the content (adapters.redis),
             i64 expiry (unix ms; -1: none), u32 len, DUMP payload
    end      b"E" u64 number of keys in the file   (a file without it is truncated: refused)
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from migrator.adapters.mysql import (
    CHUNK,
    MySource,
    columns_sql,
    digest_sql,
    execute,
    literal,
    query,
    quote_ident,
    tables_sql,
)
from migrator.adapters.redis import client, content_digest, dump_keys, keyspace, restore_keys, scan, types_of
from migrator.errors import PermanentError
from migrator.runbook.loader import params_model
from migrator.steps.base import StepContext
from migrator.steps.mysql import target_of
from migrator.steps.redis import target_conn

if TYPE_CHECKING:
    from migrator.adapters.mysql import MyConn
    from migrator.adapters.redis import RedisConn
    from migrator.steps.mysql import MyTargetParams
    from migrator.steps.redis import RedisTargetParams

REDIS_MAGIC = b"MGRREDIS\x01"
_BATCH = 500


def _private(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "wb")


def _targets_of(ctx: StepContext, uses: str) -> list[Any]:
    return [params_model(s, ctx.secret).target  # type: ignore[attr-defined]
            for s in ctx.runbook.steps if s.spec.uses == uses]


# -- mysql ---------------------------------------------------------------------------------------------
def mysql_targets(ctx: StepContext, explicit: list[MyTargetParams] | None) -> list[MyTargetParams]:
    """`explicit`, or the target of every mysql.copy step (secrets resolved in memory), one per endpoint and
    database."""
    if explicit is not None:
        return list(explicit)
    found: dict[tuple[str, str], MyTargetParams] = {}
    for t in _targets_of(ctx, "mysql.copy"):
        found.setdefault((t.endpoint, t.database), t)
    return list(found.values())


def mysql_key(t: MyTargetParams) -> str:
    return f"mysql/{t.endpoint}/{t.database}.sql"


def _rows(conn: MyConn, sql: str) -> list[list[str | None]]:
    return [[None if v is None else (v.decode() if isinstance(v, bytes) else str(v)) for v in r]
            for r in query(conn, sql)]


def mysql_digests(conn: MyConn, database: str) -> dict[str, list[str | None]]:
    """{table: [row count, row digest]} for every base table, computed by the server."""
    cols: dict[str, list[str]] = {}
    for t, c in _rows(conn, columns_sql(database)):
        cols.setdefault(str(t), []).append(str(c))
    out: dict[str, list[str | None]] = {}
    for r in _rows(conn, tables_sql(database)):
        if r[1] == "BASE TABLE":
            name = str(r[0])
            out[name] = _rows(conn, digest_sql(database, name, cols.get(name, [])))[0]
    return out


def dump_mysql(ctx: StepContext, t: MyTargetParams, out: Path) -> dict[str, Any]:
    """The dump of `t` into `out` (0600); returns its character set, collation and tables' digests."""

    conn = target_of(ctx, t)
    schema = _rows(conn, "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                         f"WHERE SCHEMA_NAME = {literal(t.database)}")
    if not schema:
        raise PermanentError(f"{ctx.step_id}: no database {t.database} on {conn.label()} to back up")
    src = MySource.local(conn)
    with _private(out) as fh, src.dump(t.database) as dump:
        while chunk := dump.read(CHUNK):
            fh.write(chunk)
        rc = dump.wait()
        err = dump.stderr_tail().decode(errors="replace").strip()
    if rc != 0:
        raise PermanentError(f"{ctx.step_id}: mariadb-dump {t.database} on {conn.label()} failed ({rc}): {err[-400:]}")
    # Taken after the dump: at the cutover the writers are frozen, so both see the same rows.
    return {"charset": schema[0][0], "collation": schema[0][1], "tables": mysql_digests(conn, t.database)}


def restore_mysql(ctx: StepContext, t: MyTargetParams, dump: Path, artefact: dict[str, Any]) -> int:
    """Drop the database, create it again (its character set, collation) and load the dump; returns tables."""

    conn = target_of(ctx, t)
    db = quote_ident(t.database)
    charset, collation = str(artefact["charset"]), str(artefact["collation"])
    if not (charset.replace("_", "").isalnum() and collation.replace("_", "").isalnum()):
        raise PermanentError(f"{ctx.step_id}: the manifest's character set {charset!r} / {collation!r} is not a name")
    execute(conn, [f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db} CHARACTER SET {charset} COLLATE {collation}"],
            f"{ctx.step_id}: restore {t.database}")
    loader = MySource.local(conn.with_database(t.database))
    with loader.open("mariadb", [f"--database={t.database}", "--binary-mode"], stdin=True) as load, \
            dump.open("rb") as fh:
        try:
            while chunk := fh.read(CHUNK):
                load.write(chunk)
        except (BrokenPipeError, OSError):
            pass  # the loader ended early: its exit status says why
        with contextlib.suppress(BrokenPipeError, OSError):
            load.close_stdin()
        rc = load.wait()
        err = load.stderr_tail().decode(errors="replace").strip()
    if rc != 0:
        raise PermanentError(f"{ctx.step_id}: loading {t.database} into {conn.label()} failed ({rc}): {err[-400:]}")
    return len(artefact.get("tables") or {})


def mysql_problems(ctx: StepContext, t: MyTargetParams, artefact: dict[str, Any]) -> list[str]:
    """How the restored database differs from the digests the backup recorded."""
    want: dict[str, list[str | None]] = artefact.get("tables") or {}
    got = mysql_digests(target_of(ctx, t), t.database)
    out = [f"{t.database}.{n}: missing" for n in sorted(set(want) - set(got))]
    out += [f"{t.database}.{n}: not in the backup" for n in sorted(set(got) - set(want))]
    for n in sorted(set(want) & set(got)):
        if want[n][0] != got[n][0]:
            out.append(f"{t.database}.{n}: {got[n][0]} rows, the backup had {want[n][0]}")
        elif want[n][1] != got[n][1]:
            out.append(f"{t.database}.{n}: the rows' digest differs from the backup's")
    return out


# -- redis ---------------------------------------------------------------------------------------------
def redis_targets(ctx: StepContext, explicit: list[RedisTargetParams] | None) -> list[RedisTargetParams]:
    """`explicit`, or the target of every redis.copy step, one per endpoint."""
    if explicit is not None:
        return list(explicit)
    found: dict[str, RedisTargetParams] = {}
    for t in _targets_of(ctx, "redis.copy"):
        found.setdefault(t.endpoint, t)
    return list(found.values())


def redis_key(t: RedisTargetParams) -> str:
    return f"redis/{t.endpoint}.mgrredis"


def _conn(ctx: StepContext, t: RedisTargetParams) -> RedisConn:
    return target_conn(ctx, t)


def dump_redis(ctx: StepContext, t: RedisTargetParams, out: Path) -> dict[str, Any]:
    """Every key of every database holding keys, into `out` (the format above); returns {db: keys}."""
    conn = _conn(ctx, t)
    per_db: dict[str, int] = {}
    total = 0
    with _private(out) as fh:
        fh.write(REDIS_MAGIC)
        for db in sorted(keyspace(client(conn))):
            c = client(conn, db)
            fh.write(b"D" + struct.pack(">I", db))
            n = 0
            for batch in scan(c, _BATCH):
                now_ms = int(time.time() * 1000)
                for k, kind, payload, pttl in dump_keys(c, batch):
                    expiry = now_ms + pttl if pttl >= 0 else -1
                    digest = content_digest(c, k, kind)
                    fh.write(b"K" + struct.pack(">I", len(k)) + k + struct.pack(">B", len(kind)) + kind.encode()
                             + digest + struct.pack(">qI", expiry, len(payload)) + payload)
                    n += 1
            per_db[str(db)] = n
            total += n
        fh.write(b"E" + struct.pack(">Q", total))
    return {"databases": per_db, "keys": total}


def _exact(fh: BinaryIO, n: int, path: Path) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise PermanentError(f"{path.name}: truncated Redis backup file")
    return data


def read_redis(path: Path) -> Iterator[tuple[int, bytes, str, bytes, int, bytes]]:
    """(db, key, type, content digest, expiry ms or -1, DUMP payload) for every key of the file."""
    with path.open("rb") as fh:
        if fh.read(len(REDIS_MAGIC)) != REDIS_MAGIC:
            raise PermanentError(f"{path.name}: not a format-1 Redis backup file")
        db, count = -1, 0
        while True:
            tag = _exact(fh, 1, path)
            if tag == b"D":
                (db,) = struct.unpack(">I", _exact(fh, 4, path))
            elif tag == b"K" and db >= 0:
                (klen,) = struct.unpack(">I", _exact(fh, 4, path))
                key = _exact(fh, klen, path)
                (tlen,) = struct.unpack(">B", _exact(fh, 1, path))
                kind = _exact(fh, tlen, path).decode()
                digest = _exact(fh, 32, path)
                expiry, plen = struct.unpack(">qI", _exact(fh, 12, path))
                count += 1
                yield db, key, kind, digest, expiry, _exact(fh, plen, path)
            elif tag == b"E":
                (total,) = struct.unpack(">Q", _exact(fh, 8, path))
                if total != count:
                    raise PermanentError(f"{path.name}: {count} keys, its end record says {total}")
                return
            else:
                raise PermanentError(f"{path.name}: unexpected record {tag!r} in a Redis backup file")


def restore_redis(ctx: StepContext, t: RedisTargetParams, path: Path, databases: list[int]) -> dict[str, int]:
    """FLUSHDB each database the backup held (`databases`, from the manifest), then RESTORE ... REPLACE every key with what is left of its TTL.
    Returns restored, expired (skipped) and with_ttl counts."""
    conn = _conn(ctx, t)
    for db in sorted(set(databases) | {db for db, *_ in read_redis(path)}):
        client(conn, db).flushdb()
    restored = expired = with_ttl = 0
    pending: list[tuple[bytes, int, bytes]] = []
    current = -1

    def flush() -> None:
        if not pending:
            return
        try:
            restore_keys(client(conn, current), pending)
        except PermanentError as exc:
            raise PermanentError(f"{ctx.step_id}: {conn.label()} db {current}: {exc}") from None
        pending.clear()

    for db, key, _kind, _digest, expiry, payload in read_redis(path):
        if db != current or len(pending) >= _BATCH:
            flush()
            current = db
        ttl = 0
        if expiry >= 0:
            ttl = expiry - int(time.time() * 1000)
            if ttl <= 0:
                expired += 1
                continue
            with_ttl += 1
        pending.append((key, ttl, payload))
        restored += 1
    flush()
    return {"restored": restored, "expired": expired, "with_ttl": with_ttl}


def redis_problems(ctx: StepContext, t: RedisTargetParams, path: Path) -> list[str]:
    """How the target differs from the file: key counts per database and each key's type and content
    digest; a key whose expiry has passed may be missing."""
    conn = _conn(ctx, t)
    now_ms = int(time.time() * 1000)
    want: dict[int, dict[bytes, tuple[str, bytes]]] = {}
    may_expire: set[tuple[int, bytes]] = set()
    for db, key, kind, digest, expiry, _ in read_redis(path):
        if expiry >= 0 and expiry <= now_ms + 5000:
            may_expire.add((db, key))
            continue
        want.setdefault(db, {})[key] = (kind, digest)
    out: list[str] = []
    space = keyspace(client(conn))
    for db, keys in sorted(want.items()):
        c = client(conn, db)
        n = space.get(db, 0)
        if not len(keys) <= n <= len(keys) + sum(1 for d, _ in may_expire if d == db):
            out.append(f"db {db}: {n} keys, the backup has {len(keys)}")
        names = sorted(keys)
        bad = [k for k, kind in zip(names, types_of(c, names), strict=True)
               if kind != keys[k][0] or content_digest(c, k, kind) != keys[k][1]]
        if bad:
            shown = ", ".join(k.decode(errors="replace") for k in bad[:5])
            out.append(f"db {db}: {len(bad)} key(s) missing or with other content, e.g. {shown}")
    return out
