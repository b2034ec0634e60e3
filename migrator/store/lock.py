"""One migrate at a time per runbook: an flock'ed lock file that says who holds it.

flock is released by the kernel when its holder dies, so a stale lock (process gone) is simply taken
over; the previous holder's record is journaled.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from migrator.errors import LockedError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.previous: dict[str, Any] | None = None  # a stale holder we took over from

    def holder(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
            data = json.loads(text) if text.strip() else None
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def acquire(self, command: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = self.holder() or {}
            raise LockedError(
                f"{self.path}: locked by pid {who.get('pid', '?')} on {who.get('host', '?')} "
                f"({who.get('command', '?')}) since {who.get('started', '?')}; wait for it to finish"
            ) from None
        old = self.holder()
        if old and old.get("pid"):
            self.previous = old  # its process is gone (else flock would have failed): stale
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty lock file means "free" to readers
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def is_held(self) -> bool:
        """True when some live process holds the flock."""
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
            return "free"
        pid = int(who.get("pid", 0))
        same_host = who.get("host") == socket.gethostname()
        alive = same_host and _pid_alive(pid)
        return f"pid {pid} on {who.get('host')}: {'running' if alive else 'gone'}"
