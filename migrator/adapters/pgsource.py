"""The source database, read where it lives: pg tools run next to the server, their output streamed back.

A `Runner` starts a command where the source server is (a local subprocess for a reachable endpoint,
`docker exec` inside the container on the VPS through the SSH/Docker adapters) and gives a byte stream.
`PgSource` builds every source-side operation (catalog queries, schema dumps, COPY TO STDOUT) on top of
it, so the copy code is the same whether the source is a test cluster or a container behind SSH.
No port is opened on the VPS: inside the container psql reaches the server over its unix socket.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
import shutil
import subprocess
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from migrator.adapters.lazy import lazy
from migrator.adapters.postgres import SESSION_OPTIONS, PgConn, clean_env
from migrator.adapters.procstream import ExecStream, LocalStream, ProcStream
from migrator.errors import PermanentError, TemporaryError
from migrator.store.procs import pdeathsig_prefix

if TYPE_CHECKING:
    import zstandard
else:
    zstandard = lazy("zstandard")

PSQL = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
CHUNK = 1 << 18


class Runner(Protocol):
    label: str

    def open(self, argv: list[str], env: dict[str, str], stdin: bool = False
             ) -> contextlib.AbstractContextManager[ProcStream]: ...


def local_tool(name: str) -> str:
    """The newest installed PostgreSQL's own binary (Debian's /usr/bin one is a perl wrapper: slower)."""
    bindir = os.environ.get("MIGRATOR_PG_BINDIR")
    candidates = [Path(bindir)] if bindir else sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                                                       key=lambda p: int(p.parent.name) if p.parent.name.isdigit()
                                                       else 0, reverse=True)
    for d in candidates:
        if (d / name).is_file():
            return str(d / name)
    return name


class LocalRunner:
    """Runs pg tools on this machine (a source reachable as host:port: tests, bench, direct access)."""

    label = "local"

    @contextlib.contextmanager
    def open(self, argv: list[str], env: dict[str, str], stdin: bool = False) -> Iterator[ProcStream]:
        argv = [local_tool(argv[0]), *argv[1:]]
        if shutil.which(argv[0]) is None:  # setpriv would exec it: say so here, not as its exit code
            raise PermanentError(f"{argv[0]} is not installed on this machine (PostgreSQL client tools)")
        try:
            # Its own process group, and killed with migrate (kill -9 included): never left running.
            proc = subprocess.Popen([*pdeathsig_prefix("KILL"), *argv],
                                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(env),
                                    start_new_session=True)
        except FileNotFoundError:
            raise PermanentError(f"{argv[0]} is not installed on this machine (PostgreSQL client tools)") from None
        stream = LocalStream(proc, wait_timeout=60)
        try:
            yield stream
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


class DockerExecRunner:
    """Runs pg tools inside the source container on the VPS (docker exec over SSH), as `os_user`."""

    def __init__(self, remote: Any, container: str, os_user: str = "postgres") -> None:
        self.remote = remote  # migrator.adapters.docker.DockerRemote
        self.container = container
        self.os_user = os_user
        self.label = f"container {container} on {getattr(remote, 'host', 'the VPS')}"

    @contextlib.contextmanager
    def open(self, argv: list[str], env: dict[str, str], stdin: bool = False) -> Iterator[ProcStream]:
        with self.remote.exec_stream(self.container, argv, env=env, user=self.os_user, stdin=stdin,
                                     timeout=3600) as s:
            yield ExecStream(s)


# The compressors the container may have, best first: zstd -1 compressed pgbench data 10x faster than
# busybox gzip -1 (0.04 s against 0.40 s for 57 MB) to half the size (the official postgres image
# installs zstd); gzip is almost everywhere.
# The script writes one tag byte first (z, g, or n for none) so the reader knows the format.
COMPRESSORS = {"zstd": ("z", "zstd -1 -q -c"), "gzip": ("g", "gzip -1")}


# "$@" | compressor, with psql's exit status kept (it tells a broken connection, 2, from an error)
# without `set -o pipefail`, which Debian's dash (the official postgres image's /bin/sh) lacks: each side
# reports its status on fd 3 while the data goes to the saved stdout (fd 4).
_PIPE = ('exec 4>&1; st=$( {{ {{ "$@" 3>&- 4>&-; echo "p$?" >&3; }} | {{ {cmd} >&4 3>&- 4>&-; echo "c$?" >&3; }}; }} '
         '3>&1 ); for s in $st; do case $s in p0|c0) ;; p*) exit "${{s#p}}";; esac; done; '
         'for s in $st; do case $s in c0) ;; c*) exit "${{s#c}}";; esac; done; exit 0')


def compress_script(choice: str) -> str:
    """A `sh -c` script running "$@" into the first available compressor ("auto") or the named one;
    uncompressed when the container has none. POSIX sh: dash, busybox ash, bash."""
    names = list(COMPRESSORS) if choice == "auto" else [choice]
    if any(n not in COMPRESSORS for n in names):
        raise PermanentError(f"compression: expected auto, {', '.join(COMPRESSORS)} or none, got {choice!r}")
    branches = "el".join(f"if command -v {n} >/dev/null 2>&1; then printf {COMPRESSORS[n][0]}; "
                         f"{_PIPE.format(cmd=COMPRESSORS[n][1])}; " for n in names)
    return f'{branches}else printf n; exec "$@"; fi'


class _Decompressing:
    """The tagged stream of `compress_script`, decompressed as it is read."""

    def __init__(self, inner: ProcStream) -> None:
        self.inner = inner
        self._z: Any = None  # the decompressor, once the tag is read (None: plain)
        self._tagged = False
        self._out = b""  # decompressed, not yet returned: handed out in slices (one copy, not three)
        self._pos = 0
        self._eof = False

    @staticmethod
    def _decoder(tag: bytes) -> Any:
        if tag == b"z":
            return zstandard.ZstdDecompressor().decompressobj()
        if tag == b"g":
            return zlib.decompressobj(wbits=31)  # gzip framing
        if tag == b"n":
            return None
        raise PermanentError(f"the COPY stream from the source starts with {tag!r}: expected z, g or n")

    def read(self, n: int = -1) -> bytes:
        while self._pos >= len(self._out) and not self._eof:
            chunk = self.inner.read(CHUNK)
            if not chunk:
                self._out = self._z.flush() if self._z is not None and hasattr(self._z, "flush") else b""
                self._pos = 0
                self._eof = True
                break
            if not self._tagged:
                self._z, self._tagged, chunk = self._decoder(chunk[:1]), True, chunk[1:]
            self._out = chunk if self._z is None else self._z.decompress(chunk)
            self._pos = 0
        end = len(self._out) if n < 0 else min(len(self._out), self._pos + n)
        piece = self._out[self._pos:end]
        self._pos = end
        return piece

    def write(self, data: bytes) -> int:
        return self.inner.write(data)

    def close_stdin(self) -> None:
        self.inner.close_stdin()

    def wait(self) -> int:
        return self.inner.wait()

    def stderr_tail(self) -> bytes:
        return self.inner.stderr_tail()


class SessionGone(Exception):
    """A kept-open psql that had ended before a script could be sent (e.g. its channel closed while idle)."""


class _Session:
    """One psql kept open in the container for queries and small statements: a docker exec costs ~0.25 s,
    a statement on an open session a few milliseconds (a copy or a verify runs dozens)."""

    def __init__(self, runner: Runner, env: dict[str, str]) -> None:
        self._stack = contextlib.ExitStack()
        self._s = self._stack.enter_context(runner.open([*PSQL, "-f", "-"], env, stdin=True))
        self._buf = bytearray()

    def send(self, script: str) -> bytes:
        """Run `script` (complete statements); its output up to a marker only this call knows."""
        return self._until_marker(script, separator=False)

    def send_data(self, script: str) -> bytes:
        """Like `send`, for output of any bytes (a binary COPY need not end with a newline): a newline of
        ours goes between the output and the marker and is not returned."""
        return self._until_marker(script, separator=True)

    def _until_marker(self, script: str, separator: bool) -> bytes:
        marker = f"__migrator_end_{secrets.token_hex(8)}__".encode()
        try:
            self._s.write(script.encode() + (b"\n\\echo" if separator else b"") + b"\n\\echo " + marker + b"\n")
        except OSError as exc:  # the psql (or its channel) is gone: nothing of this script was run
            raise SessionGone(str(exc)) from exc
        end = b"\n" + marker + b"\n"
        searched = 0  # the buffer before this was searched already (a table's output can be megabytes)
        while True:
            if not separator and self._buf.startswith(marker + b"\n"):
                del self._buf[: len(marker) + 1]
                return b""
            i = self._buf.find(end, searched)
            if i >= 0:
                out = bytes(self._buf[: i if separator else i + 1])
                del self._buf[: i + len(end)]
                return out
            searched = max(0, len(self._buf) - len(end))
            chunk = self._s.read(CHUNK)
            if not chunk:
                raise EOFError
            self._buf += chunk

    def failure(self) -> tuple[int, bytes]:
        with contextlib.suppress(OSError, EOFError):  # its channel may be closed already: nothing to end
            self._s.close_stdin()
        return self._s.wait(), self._s.stderr_tail()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._s.close_stdin()
        with contextlib.suppress(Exception):
            self._stack.close()


@dataclass
class PgSource:
    """The source database, reached through a Runner. `env` is the libpq environment of the tools."""

    runner: Runner
    database: str
    env: dict[str, str] = field(default_factory=dict)
    # Compress the COPY stream where it is produced ("auto": zstd, else gzip; None: off): table data is
    # very compressible, and over docker exec through SSH the bytes are what limit a copy (bench/db_copy.py).
    compress: str | None = None
    # Queries go through one long-lived psql (see _Session) instead of one docker exec each.
    persistent: bool = False
    _session: _Session | None = field(default=None, repr=False, compare=False)
    _ssh: Any = field(default=None, repr=False, compare=False)  # where release_idle is registered
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def local(cls, conn: PgConn) -> PgSource:
        return cls(LocalRunner(), conn.database, conn.env())

    @classmethod
    def container(cls, remote: Any, container: str, database: str, user: str, password: str | None = None,
                  socket_dir: str = "/var/run/postgresql", os_user: str = "postgres",
                  compression: str | None = "auto") -> PgSource:
        env = {"PGHOST": socket_dir, "PGUSER": user, "PGDATABASE": database, "PGOPTIONS": SESSION_OPTIONS,
               "PGAPPNAME": "migrator"}
        if password is not None:
            env["PGPASSWORD"] = password
        source = cls(DockerExecRunner(remote, container, os_user), database, env, compress=compression,
                     persistent=True)
        source._ssh = getattr(remote, "ssh", None)
        if source._ssh is not None:  # the kept-open psql holds an SSH session: given back when all are in use
            source._ssh.add_idle_releaser(source.release_idle)
        return source

    @property
    def label(self) -> str:
        return f"{self.database} in {self.runner.label}"

    def _fail(self, what: str, rc: int, err: bytes) -> None:
        tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-3:])
        msg = f"source {self.label}: {what} exited {rc}: {tail or 'no message'}"
        # psql exits 2 when the connection failed or broke: worth another try.
        raise (TemporaryError(msg) if rc == 2 else PermanentError(msg))

    def _session_run(self, script: str) -> bytes:
        with self._lock:
            for attempt in (1, 2):
                if self._session is None:
                    self._session = _Session(self.runner, self.env)
                try:
                    return self._session.send(script)
                except SessionGone as exc:
                    # Nothing was sent: a session that died while idle is replaced once, transparently.
                    self._session.close()
                    self._session = None
                    if attempt == 2:
                        raise TemporaryError(f"source {self.label}: psql session ended: {exc}") from None
                except EOFError:
                    break
            if self._session is not None:
                session, self._session = self._session, None
                rc, err = session.failure()
                session.close()
                self._fail("psql", rc or 2, err)
            raise TemporaryError(f"source {self.label}: psql session ended")  # not reached: _fail raises

    def release_idle(self) -> None:
        """Close the kept-open psql unless a query is using it (the next query opens another)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._session is not None:
                self._session.close()
                self._session = None
        finally:
            self._lock.release()

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.remove_idle_releaser(self.release_idle)
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def run(self, argv: list[str], script: str | None = None) -> bytes:
        """Run a tool to completion; stdout as bytes."""
        with self.runner.open(argv, self.env, stdin=script is not None) as s:
            lost = None
            if script is not None:
                try:
                    s.write(script.encode())
                    s.close_stdin()
                except OSError as exc:  # the tool ended early, or its stream did (paramiko: "Socket is closed")
                    lost = exc
            out = bytearray()
            while chunk := s.read(CHUNK):
                out += chunk
            rc = s.wait()
            if rc != 0:
                self._fail(argv[0], rc, s.stderr_tail())
            if lost is not None:  # "success" on part of a script: not to be trusted
                raise TemporaryError(f"source {self.label}: {argv[0]}'s input was cut short: {lost}")
        return bytes(out)

    def query(self, sql: str) -> list[list[str]]:
        """Rows of a query as text (NULL comes out as ''), through CSV so any value survives."""
        script = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv);\n"
        out = self._session_run(script) if self.persistent else self.run([*PSQL, "-f", "-"], script)
        return [list(r) for r in csv.reader(io.StringIO(out.decode()))]

    def execute(self, sql: str) -> None:
        script = sql if sql.rstrip().endswith(";") else sql + ";\n"
        if self.persistent:
            self._session_run(script)
        else:
            self.run([*PSQL, "-f", "-"], script)

    def dump_schema(self, section: str) -> str:
        """pg_dump of one section (pre-data, post-data) as SQL, with privileges, default privileges, comments
        and security labels, without replication objects (publications, subscriptions: postgres.replicate's).

        Not --schema-only, which leaves out large objects and materialized views' data: pre-data then
        carries each large object's lo_create, owner, grants and comment, and post-data a REFRESH of each
        materialized view populated in the source, in dependency order (table rows and large objects'
        contents are the data section, which is never dumped here)."""
        argv = ["pg_dump", f"--section={section}", "--no-publications", "--no-subscriptions",
                "--quote-all-identifiers"]
        return self.run(argv).decode()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A snapshot exported from a transaction held open (its own psql) until the block ends: COPY
        sessions that import it read one consistent view of the whole database (the pieces of a table
        split by block range, and every table as of the same instant)."""
        session = _Session(self.runner, self.env)
        try:
            try:
                out = session.send("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
                                   "COPY (SELECT pg_export_snapshot()) TO STDOUT;\n")
            except (EOFError, SessionGone):
                rc, err = session.failure()
                self._fail("psql (snapshot)", rc or 2, err)
                raise  # not reached: _fail raises
            yield Snapshot(out.decode().strip(), self, session)
        finally:
            session.close()

    @contextlib.contextmanager
    def copy_out(self, copy_sql: str, snapshot: Snapshot | None = None) -> Iterator[ProcStream]:
        """A running `COPY ... TO STDOUT`, in the exported `snapshot` if given; the caller reads the
        stream then calls `finish`."""
        commands = [copy_sql]
        if snapshot is not None:
            commands = ["BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                        f"SET TRANSACTION SNAPSHOT '{snapshot.id}'", copy_sql]
        psql = [*PSQL]
        for c in commands:
            psql += ["-c", c]
        if not self.compress:
            with self.runner.open(psql, self.env) as s:
                yield s
            return
        argv = ["sh", "-c", compress_script(self.compress), "sh", *psql]
        with self.runner.open(argv, self.env) as s:
            yield _Decompressing(s)

    def finish(self, s: ProcStream, what: str) -> None:
        rc = s.wait()
        if rc != 0:
            self._fail(what, rc, s.stderr_tail())


class Snapshot:
    """An exported snapshot and the session holding it open. Small tables are read through that session
    (in the snapshot, and without a docker exec each: ~0.25 s and a process in the container saved)."""

    def __init__(self, snapshot_id: str, source: PgSource, session: _Session) -> None:
        if not snapshot_id or not snapshot_id.replace("-", "").isalnum():
            raise PermanentError(f"source {source.label}: unexpected snapshot id {snapshot_id!r}")
        self.id = snapshot_id
        self._source = source
        self._session: _Session | None = session
        self._lock = threading.Lock()

    def read_whole(self, copy_sql: str) -> bytes:
        """The whole output of a `COPY ... TO STDOUT` (for small tables: it is held in memory)."""
        with self._lock:
            if self._session is None:
                raise PermanentError(f"source {self._source.label}: the snapshot's session has ended")
            try:
                return self._session.send_data(copy_sql.rstrip().rstrip(";") + ";\n")
            except (EOFError, SessionGone):  # the snapshot went with the session: the step is retried
                session, self._session = self._session, None
                rc, err = session.failure()
                self._source._fail("psql (snapshot session)", rc or 2, err)
                raise  # not reached: _fail raises
