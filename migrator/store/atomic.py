"""Crash-safe file writes: temp file, fsync, os.replace, fsync of the directory.

The temp file is named `.NAME.mig-PID-START-RANDOM.tmp` (PID and START: the writer's pid and start
time), so that the temp files of a write interrupted by a crash can be removed by the next write of the
same file, and only when their writer is gone: never another program's file, never a live writer's.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from pathlib import Path

from migrator.errors import PermanentError
from migrator.store.procs import ProcessId, start_ticks

_TEMP = re.compile(r"^\.(?P<name>.+)\.mig-(?P<pid>\d+)-(?P<start>\d+|x)-[0-9a-f]{8}\.tmp$")


def _temp_name(path: Path) -> Path:
    start = start_ticks(os.getpid())
    return path.parent / f".{path.name}.mig-{os.getpid()}-{start if start is not None else 'x'}-{secrets.token_hex(4)}.tmp"


def clean_stale_temps(path: Path) -> list[Path]:
    """Remove temp files of interrupted writes of `path` whose writer is gone; returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match or match.group("name") != path.name or not entry.is_file(follow_symlinks=False):
            continue
        start = match.group("start")
        # This machine's by construction: the temp file sits next to its target on a local disk.
        writer = ProcessId(pid=int(match.group("pid")), start=None if start == "x" else int(start),
                           host=socket.gethostname(), boot="")
        if writer.pid == os.getpid() or writer.alive():
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermanentError(f"{path.parent}: cannot create the directory: {exc.strerror}") from None
    clean_stale_temps(path)
    tmp = _temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise PermanentError(f"{path}: cannot write: {exc.strerror} (temp file {tmp.name})") from None
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            # ENOSPC, EDQUOT, EIO...: name the file, not just the errno.
            raise PermanentError(f"{path}: cannot write: {exc.strerror or exc}") from None
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
