"""One migrate at a time per runbook: a lock that cannot be split.

Two kernel objects make the lock, so that removing a file cannot give two holders:

- an flock'ed lock file, bound to its inode: after flock, the path must still name the inode we locked
  (else someone removed or replaced it between our open and our flock: retry on the new file). It says
  who holds it (pid, start time, host, command); flock is released by the kernel when its holder dies,
  so a stale lock is simply taken over and the previous record journaled;
- a Linux abstract Unix socket named after the state directory's inode and the runbook, bound (and
  listening) for as long as the lock is held. It has no file to remove, and the kernel frees it when the
  holder dies. A second `migrate` whose lock file was removed under the first one still finds the name
  taken, and learns the holder's pid from SO_PEERCRED.

`break_stale` (for `migrate unlock`) takes the lock itself, non-blocking, before it removes anything.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from migrator.errors import LockedError
from migrator.store.procs import ProcessId

_RETRIES = 20  # a lock file replaced 20 times in a row while we take it: give up, say so
_PROBE_WAIT = 0.5  # seconds a run waits out a shared probe of `status`/`serve` before it says "locked"


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return  # closed by release()
        conn.close()


def _close(sock: socket.socket, drain: threading.Thread | None = None) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the drain thread
    except OSError:
        pass
    # The kernel frees the name only when the drain thread's accept() has let go of the socket too:
    # closing without waiting let an immediate re-acquire in the same process meet EADDRINUSE.
    if drain is not None:
        drain.join(timeout=2)
    sock.close()


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._sock: socket.socket | None = None
        self._drain: threading.Thread | None = None
        self.previous: dict[str, Any] | None = None  # a stale holder we took over from

    # -- who holds it -----------------------------------------------------------------------------
    def holder(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
            data = json.loads(text) if text.strip() else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _socket_name(self) -> bytes | None:
        """The abstract socket's name: the state directory's (dev, inode) and the lock's file name."""
        try:
            st = os.stat(self.path.parent)
        except OSError:
            return None
        return f"\0migrator-lock/{st.st_dev:x}:{st.st_ino:x}/{self.path.name}".encode()[:107]

    def _socket_holder(self) -> int | None:
        """The pid listening on the lock's socket name (0 if unknown), or None when nobody holds it."""
        name = self._socket_name()
        if name is None:
            return None
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(2)
            probe.connect(name)
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        except OSError:
            return 0  # the name exists but its backlog is full or similar: someone holds it
        else:
            try:
                creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                return int(struct.unpack("3i", creds)[0])
            except OSError:
                return 0
        finally:
            probe.close()

    # -- taking and releasing ---------------------------------------------------------------------
    def _open_locked(self) -> int | None:
        """Open and flock the lock file (non-blocking), re-checking that the path is still that inode.

        Returns the fd, or None when a live process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        probe_deadline = time.monotonic() + _PROBE_WAIT
        replaced = 0
        while replaced < _RETRIES:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                # `status` and `serve` probe with a shared flock for an instant; a run holds the socket
                # name too. No socket holder: most likely a probe, so try again for a moment.
                if self._socket_holder() is not None or time.monotonic() >= probe_deadline:
                    return None
                time.sleep(0.01)
                continue
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                now = None
            mine = os.fstat(fd)
            if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                return fd
            os.close(fd)  # the file we locked is no longer the lock file: lock the one that is
            replaced += 1
        raise LockedError(f"{self.path}: the lock file kept being replaced while we took it; "
                          "is something removing it? nothing was done")

    def _locked_error(self, pid: int | None = None) -> LockedError:
        who = self.holder() or {}
        if pid and not who.get("pid"):
            who = {"pid": pid, "host": "this host", "command": "?", "started": "?"}
        return LockedError(
            f"{self.path}: locked by pid {who.get('pid', pid or '?')} on {who.get('host', '?')} "
            f"({who.get('command', '?')}) since {who.get('started', '?')}; wait for it to finish"
        )

    def _bind(self) -> socket.socket | None:
        name = self._socket_name()
        if name is None:
            raise LockedError(f"{self.path.parent}: cannot stat the state directory")
        deadline = time.monotonic() + 1.0
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # close-on-exec: children never keep it
            try:
                sock.bind(name)
                break
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                # A name that refuses connections is one being torn down by a holder that just released
                # it: wait a moment for it to go. A name that answers is held.
                if self._socket_holder() is not None or time.monotonic() > deadline:
                    return None
                time.sleep(0.02)
        sock.listen(64)
        # Probes (`status`, a second `migrate`) connect only to learn the holder's pid: accept and drop
        # them, so the backlog never fills.
        self._drain = threading.Thread(target=_drain, args=(sock,), name="lock-socket", daemon=True)
        self._drain.start()
        return sock

    def acquire(self, command: str) -> None:
        fd = self._open_locked()
        if fd is None:
            raise self._locked_error()
        sock = self._bind()
        if sock is None:
            # Our lock file is new: the holder's was removed under it. The socket still names it.
            os.close(fd)
            pid = self._socket_holder()
            raise LockedError(
                f"{self.path}: locked by pid {pid or '?'} on this host, whose lock file was removed while it "
                "ran; wait for it to finish (never remove the lock file by hand: use `migrate unlock`)"
            )
        old = self.holder()
        if old and old.get("pid"):
            self.previous = old  # its process is gone (else flock would have failed): stale
        me = ProcessId.of(os.getpid())
        record = {
            "pid": me.pid,
            "start_ticks": me.start,
            "host": me.host,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd, self._sock = fd, sock

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty lock file means "free" to readers
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None
            if self._sock is not None:
                _close(self._sock, self._drain)
                self._sock = None
                self._drain = None

    def still_ours(self) -> bool:
        """While held: does the path still name the inode we locked? (False: someone removed it.)"""
        if self._fd is None:
            return False
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self._fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    # -- looking without taking -------------------------------------------------------------------
    def is_held(self) -> bool:
        """True when some live process holds the lock (flock on the file, or the socket name).

        Read-only: works on a read-only state directory, and never takes the lock."""
        if self._socket_holder() is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except PermissionError:
            return False
        try:
            # A shared probe: conflicts with a holder's exclusive lock, so it tells without waiting.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def describe_holder_liveness(self) -> str:
        who = self.holder()
        if not who:
            pid = self._socket_holder()
            return f"pid {pid or '?'} on this host: running (its lock file was removed)" if pid is not None else "free"
        try:
            pid = int(who.get("pid", 0))
        except (TypeError, ValueError):
            return "unreadable lock record"
        start = who.get("start_ticks")
        ident = ProcessId(pid=pid, start=start if isinstance(start, int) else None,
                          host=str(who.get("host")), boot="")
        return f"pid {pid} on {who.get('host')}: {'running' if ident.alive() else 'gone'}"

    def break_stale(self) -> tuple[str, dict[str, Any] | None]:
        """Remove a lock file left behind, holding the lock while doing so.

        Returns ("held", record) when a live process holds it (nothing removed), ("absent", None) when
        there was no file, else ("removed", the previous record or None if it was empty)."""
        if not self.path.exists():
            return ("absent", None) if self._socket_holder() is None else ("held", None)
        fd = self._open_locked()
        if fd is None:
            return "held", self.holder()
        try:
            sock = self._bind()
            if sock is None:
                return "held", self.holder()
            try:
                who = self.holder()
                self.path.unlink()  # still holding the flock on this inode: nobody took it in between
                return "removed", who
            finally:
                _close(sock)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
