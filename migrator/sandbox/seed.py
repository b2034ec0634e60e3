"""Seed the VPS's data: each source database through ``docker exec ... psql`` (SQL on stdin, local socket,
no password anywhere), and the ``wpcs-uploads`` volume with real files (nested dirs, binary images)."""

from __future__ import annotations

import io
import random
import struct
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor

from . import seed_acme, seed_sql, seed_stores
from .compose import container_id
from .dockerd import docker_cli, docker_env
from .layout import SOURCE_DATABASES, UPLOADS_MOUNT, UPLOADS_SERVICE, Paths
from .proc import Log, SandboxError, run

UPLOADS_MARKER = ".sandbox-seeded"


def _psql(paths: Paths, db: str, sql: str, timeout: float = 1800) -> str:
    service, dbname, user, _ = SOURCE_DATABASES[db]
    cid = container_id(paths, service)
    cp = run([docker_cli(), "exec", "-i", cid, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
              "-U", user, "-d", dbname], env=docker_env(paths), input=sql.encode(), timeout=timeout)
    return cp.stdout.decode().strip()


def seeded_scale(paths: Paths, db: str) -> int | None:
    if _psql(paths, db, "SELECT to_regclass('public._sandbox_seed') IS NOT NULL;\n", 60) != "t":
        return None
    out = _psql(paths, db, "SELECT coalesce(max(scale)::text, '') FROM public._sandbox_seed;\n", 60)
    return int(out) if out.strip().isdigit() else None


def seed_database(paths: Paths, db: str, scale: int, env: dict[str, str], log: Log) -> None:
    have = seeded_scale(paths, db)
    if have is not None:
        log(f"seed {db}: already seeded (scale {have})")
        return
    _psql(paths, db, seed_sql.script(db, scale, env.get("MIGRATOR_SMOKE_CLIENT_SECRET", "")))
    log(f"seed {db}: seeded (scale {scale})")


def count_rows(paths: Paths, db: str, table: str) -> int:
    return int(_psql(paths, db, f"SELECT count(*) FROM {table};\n", 120))


# --- uploads ---------------------------------------------------------------------------------------

def _png(width: int, height: int, rng: random.Random) -> bytes:
    """A valid PNG (RGB, 8 bit) with noisy pixels, so it does not compress away."""
    raw = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")


def uploads_tar(scale: int) -> tuple[bytes, int, int]:
    """A tarball of the uploads tree: ~300 files x scale in year/month dirs; returns (tar, files, bytes)."""
    rng = random.Random(20240601)
    buf = io.BytesIO()
    files = total = 0
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes) -> None:
            nonlocal files, total
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.uid, ti.gid, ti.mtime = len(data), 0o644, 33, 33, 1717200000 + files
            tar.addfile(ti, io.BytesIO(data))
            files += 1
            total += len(data)

        count = 300 * max(1, scale)
        for i in range(count):
            year = 2022 + i % 3
            month = 1 + (i // 3) % 12
            base = f"{year}/{month:02d}"
            kind = i % 4
            if kind == 0:
                w, h = rng.choice([(64, 64), (96, 72), (128, 96)])
                add(f"{base}/photo-{i:05d}.png", _png(w, h, rng))
            elif kind == 1:
                add(f"{base}/scan-{i:05d}.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + rng.randbytes(rng.randint(4000, 16000)))
            elif kind == 2:
                add(f"{base}/thumbs/photo-{i - 2:05d}-150x150.webp", b"RIFF" + rng.randbytes(rng.randint(1500, 6000)))
            else:
                text = "".join(rng.choice("abcdefghij klmnop\n") for _ in range(rng.randint(200, 3000)))
                add(f"{base}/notes-{i:05d}.txt", text.encode())
        add("sites/site-1/.htaccess", b"Options -Indexes\n")
        add(UPLOADS_MARKER, f"scale={scale}\n".encode())
    return buf.getvalue(), files, total


def seed_uploads(paths: Paths, scale: int, log: Log) -> None:
    cid = container_id(paths, UPLOADS_SERVICE)
    env = docker_env(paths)
    probe = run([docker_cli(), "exec", cid, "test", "-f", f"{UPLOADS_MOUNT}/{UPLOADS_MARKER}"], env=env,
                check=False, timeout=30)
    if probe.returncode == 0:
        log("seed uploads: already seeded")
        return
    data, files, total = uploads_tar(scale)
    run([docker_cli(), "cp", "-a", "-", f"{cid}:{UPLOADS_MOUNT}"], env=env, input=data, timeout=600)
    log(f"seed uploads: {files} files, {total / 1e6:.1f} MB into volume wpcs-uploads")


def seed_all(paths: Paths, scale: int, env: dict[str, str], log: Log) -> None:
    # acme.json in a worker of its own (a few docker calls, done while the databases seed): every other
    # seeder starts no later than it did without it.
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(seed_acme.seed_acme, paths, log)]
        futures += [pool.submit(seed_database, paths, db, scale, env, log) for db in SOURCE_DATABASES]
        futures.append(pool.submit(seed_uploads, paths, scale, log))
        futures.append(pool.submit(seed_stores.seed_mysql, paths, scale, env, log))
        futures.append(pool.submit(seed_stores.seed_redis, paths, scale, env, log))
        futures.append(pool.submit(seed_stores.seed_n8n, paths, scale, log))
        futures.append(pool.submit(seed_stores.seed_grafana, paths, scale, log))
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise SandboxError(f"seeding failed: {errors[0]}")
