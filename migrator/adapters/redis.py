"""Redis for the migrator (redis-py): keys moved with DUMP/RESTORE and their TTLs, content digests.

The password goes over the wire only (AUTH), never into argv. DUMP's payload is the server's own
serialisation (RDB format): RESTORE refuses a payload from a newer RDB version, so the target must run
the same Redis or a newer one. The digests below read each value through the type's own commands, so
they do not depend on the encoding (listpack, hashtable, skiplist...) either side chose.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migrator.adapters.lazy import lazy
from migrator.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    import redis
else:
    redis = lazy("redis")

TYPES = ("string", "hash", "list", "set", "zset", "stream")


@dataclass(frozen=True)
class RedisConn:
    host: str
    port: int
    password: str | None = None
    username: str | None = None

    def label(self) -> str:
        return f"{self.host}:{self.port}"


def client(conn: RedisConn, db: int = 0) -> Any:
    c = redis.Redis(host=conn.host, port=conn.port, db=db, password=conn.password, username=conn.username,
                    socket_timeout=30, socket_connect_timeout=10, decode_responses=False)
    try:
        c.ping()
    except redis.exceptions.AuthenticationError as exc:
        raise PermanentError(f"redis {conn.label()}: authentication failed ({exc}); check the password") from None
    except redis.exceptions.ResponseError as exc:
        if "NOAUTH" in str(exc):
            raise PermanentError(f"redis {conn.label()}: a password is required") from None
        raise PermanentError(f"redis {conn.label()}: {exc}") from None
    except redis.exceptions.ConnectionError as exc:
        raise TemporaryError(f"redis {conn.label()}: {exc}") from None
    return c


def keyspace(c: Any) -> dict[int, int]:
    """Databases holding keys -> their key count (INFO keyspace)."""
    info = c.info("keyspace")
    return {int(name[2:]): int(v["keys"]) for name, v in info.items() if name.startswith("db")}


def scan(c: Any, batch: int = 500) -> Iterator[list[bytes]]:
    cursor = 0
    while True:
        cursor, keys = c.scan(cursor=cursor, count=batch)
        if keys:
            yield list(keys)
        if cursor == 0:
            return


def copy_keys(src: Any, dst: Any, keys: list[bytes]) -> tuple[int, int, int]:
    """DUMP + PTTL on the source, RESTORE ... REPLACE on the target, in one pipeline each way.

    The TTL given to RESTORE is what was left at the read minus the time the batch took, so a key does
    not live longer on the target than on the source. Returns (copied, with_ttl, payload bytes); keys
    that vanished (or expired) between SCAN and DUMP are skipped."""
    read_at = time.monotonic()
    pipe = src.pipeline(transaction=False)
    for k in keys:
        pipe.dump(k)
        pipe.pttl(k)
    answers = pipe.execute()
    elapsed_ms = int((time.monotonic() - read_at) * 1000)
    out = dst.pipeline(transaction=False)
    copied = with_ttl = size = 0
    for i, k in enumerate(keys):
        payload, pttl = answers[2 * i], answers[2 * i + 1]
        if payload is None or pttl == -2:
            continue
        ttl = 0
        if pttl >= 0:
            ttl = pttl - elapsed_ms
            if ttl <= 0:
                continue  # expired on the source meanwhile
            with_ttl += 1
        out.restore(k, ttl, payload, replace=True)
        copied += 1
        size += len(payload)
    try:
        out.execute()
    except redis.exceptions.ResponseError as exc:
        if "payload version" in str(exc) or "checksum" in str(exc):
            raise PermanentError(f"RESTORE refused a DUMP payload ({exc}): the target Redis must run the "
                                 "source's version or a newer one") from None
        raise PermanentError(f"RESTORE failed: {exc}") from None
    return copied, with_ttl, size


def dump_keys(c: Any, keys: list[bytes]) -> list[tuple[bytes, str, bytes, int]]:
    """(key, type, DUMP payload, PTTL) of each key still there, read in one pipeline (backup.create)."""
    pipe = c.pipeline(transaction=False)
    for k in keys:
        pipe.type(k)
        pipe.dump(k)
        pipe.pttl(k)
    answers = pipe.execute()
    out = []
    for i, k in enumerate(keys):
        kind_raw, payload, pttl = answers[3 * i: 3 * i + 3]
        kind = kind_raw.decode() if isinstance(kind_raw, bytes) else str(kind_raw)
        if payload is not None and kind != "none" and pttl != -2:  # else gone (deleted, expired) since the SCAN
            out.append((k, kind, payload, int(pttl)))
    return out


def restore_keys(c: Any, items: list[tuple[bytes, int, bytes]]) -> None:
    """RESTORE key ttl payload REPLACE for each (key, ttl ms or 0, payload), in one pipeline."""
    pipe = c.pipeline(transaction=False)
    for k, ttl, payload in items:
        pipe.restore(k, ttl, payload, replace=True)
    try:
        pipe.execute()
    except redis.exceptions.ResponseError as exc:
        raise PermanentError(f"RESTORE failed ({exc}): the target Redis must run the backed-up server's version "
                             "or a newer one") from None


def types_of(c: Any, keys: list[bytes]) -> list[str]:
    pipe = c.pipeline(transaction=False)
    for k in keys:
        pipe.type(k)
    return [t.decode() if isinstance(t, bytes) else str(t) for t in pipe.execute()]


def content_digest(c: Any, key: bytes, kind: str) -> bytes:
    """sha256 of the value of `key` read through its type's commands (32 bytes)."""
    return _content(c, key, kind)


def _content(c: Any, key: bytes, kind: str) -> bytes:
    """The value of `key` through its type's own read commands, canonically ordered."""
    h = hashlib.sha256(kind.encode() + b"\0")
    if kind == "string":
        h.update(c.get(key) or b"")
    elif kind == "hash":
        for f, v in sorted(c.hgetall(key).items()):
            h.update(len(f).to_bytes(4, "big") + f + len(v).to_bytes(4, "big") + v)
    elif kind == "list":
        for v in c.lrange(key, 0, -1):
            h.update(len(v).to_bytes(4, "big") + v)
    elif kind == "set":
        for v in sorted(c.smembers(key)):
            h.update(len(v).to_bytes(4, "big") + v)
    elif kind == "zset":
        for m, s in c.zrange(key, 0, -1, withscores=True):
            h.update(len(m).to_bytes(4, "big") + m + repr(float(s)).encode() + b"\0")
    elif kind == "stream":
        for entry_id, fields in c.xrange(key, "-", "+"):
            h.update(entry_id + b"\0")
            for f, v in fields.items():
                h.update(len(f).to_bytes(4, "big") + f + len(v).to_bytes(4, "big") + v)
        for g in c.xinfo_groups(key):
            h.update(b"group\0" + _b(g.get("name")) + b"\0" + _b(g.get("last-delivered-id")))
    else:
        raise PermanentError(f"key {key!r}: type {kind} is not handled (a module's type?)")
    return h.digest()


def _b(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


@dataclass
class Summary:
    """A database's keys: count per type, keys with a TTL, and one digest over every key's content."""

    by_type: dict[str, int]
    with_ttl: int
    digest: str
    keys: dict[bytes, tuple[str, bytes, int]]  # key -> (type, content digest, pttl)


def summarize(c: Any) -> Summary:
    by_type = dict.fromkeys(TYPES, 0)
    keys: dict[bytes, tuple[str, bytes, int]] = {}
    for batch in scan(c):
        pipe = c.pipeline(transaction=False)
        for k in batch:
            pipe.type(k)
            pipe.pttl(k)
        answers = pipe.execute()
        for i, k in enumerate(batch):
            kind = answers[2 * i].decode() if isinstance(answers[2 * i], bytes) else str(answers[2 * i])
            if kind == "none":
                continue
            by_type[kind] = by_type.get(kind, 0) + 1
            keys[k] = (kind, _content(c, k, kind), int(answers[2 * i + 1]))
    h = hashlib.sha256()
    for k in sorted(keys):
        kind, content, _ = keys[k]
        h.update(len(k).to_bytes(4, "big") + k + kind.encode() + content)
    return Summary(by_type, sum(1 for v in keys.values() if v[2] >= 0), h.hexdigest(), keys)


def compare(src: Summary, dst: Summary, ttl_slack_ms: int = 5000) -> list[str]:
    """What differs between a source and a target database (empty: the same keys, types, content, TTLs).
    A target TTL may be shorter than the source's (time passed since the copy), never longer."""
    problems: list[str] = []
    if src.by_type != dst.by_type:
        diff = {t: (src.by_type.get(t, 0), dst.by_type.get(t, 0)) for t in sorted(set(src.by_type) | set(dst.by_type))
                if src.by_type.get(t, 0) != dst.by_type.get(t, 0)}
        problems.append("keys per type differ (source, target): "
                        + ", ".join(f"{t} {a} vs {b}" for t, (a, b) in diff.items()))
    missing = [k for k in src.keys if k not in dst.keys]
    extra = [k for k in dst.keys if k not in src.keys]
    if missing:
        problems.append(f"{len(missing)} key(s) missing on the target, e.g. {_names(missing)}")
    if extra:
        problems.append(f"{len(extra)} key(s) on the target only, e.g. {_names(extra)}")
    changed = [k for k in src.keys if k in dst.keys and src.keys[k][:2] != dst.keys[k][:2]]
    if changed:
        problems.append(f"{len(changed)} key(s) with other content, e.g. {_names(changed)}")
    ttl: list[bytes] = []
    for k, (_, _, s_ttl) in src.keys.items():
        if k not in dst.keys:
            continue
        d_ttl = dst.keys[k][2]
        if (s_ttl < 0) != (d_ttl < 0) or (s_ttl >= 0 and d_ttl > s_ttl + ttl_slack_ms):
            ttl.append(k)
    if ttl:
        problems.append(f"{len(ttl)} key(s) with another expiry, e.g. {_names(ttl)}")
    return problems


def _names(keys: list[bytes]) -> str:
    return ", ".join(k.decode(errors="replace") for k in sorted(keys)[:5])
