"""Who a process is: its pid AND its start time, so that a reused pid is never taken for the original.

The start time is field 22 of /proc/PID/stat (clock ticks since boot); together with the boot id it names
one process for the life of the machine. Off Linux (no /proc) only the pid is known, and liveness falls
back to kill(pid, 0).
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces and ')'.
    fields = raw[raw.rfind(b")") + 2:].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3
    except (IndexError, ValueError):
        return None


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start: int | None
    host: str
    boot: str

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        return cls(pid=pid, start=start_ticks(pid), host=socket.gethostname(), boot=boot_id())

    def same_machine(self) -> bool:
        return self.host == socket.gethostname() and (not self.boot or self.boot == boot_id())

    def alive(self) -> bool:
        """True when this very process still runs (same pid, same start time, same boot)."""
        if not self.same_machine():
            return False
        if self.start is not None:
            return start_ticks(self.pid) == self.start
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def is_zombie(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    rest = raw[raw.rfind(b")") + 2:].split()
    return bool(rest) and rest[0] == b"Z"


def pdeathsig_prefix(signame: str = "TERM") -> list[str]:
    """argv prefix that makes the command get `signame` when its parent (migrate) dies, kill -9 included.

    util-linux's setpriv sets PR_SET_PDEATHSIG and execs the command (no preexec_fn, which is unsafe in a
    process with threads). Empty where Linux or setpriv is missing: the command then outlives a crash."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or not Path("/proc/self/stat").exists():
        return []
    return [setpriv, "--pdeathsig", signame, "--"]
