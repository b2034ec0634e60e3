"""Process helpers: run commands (never through a shell), start daemons with pid files, stop them by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

Log = Callable[[str], None]

# Popen objects of daemons we started, kept so they are reaped instead of lingering as zombies.
_CHILDREN: list[subprocess.Popen[bytes]] = []


class SandboxError(RuntimeError):
    """Something in the sandbox failed to come up or go down."""


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 120,
    check: bool = True,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command without a shell; raise SandboxError with its stderr when it fails."""
    args = [str(a) for a in argv]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        cp = subprocess.run(
            args,
            input=input,
            env=full_env,
            capture_output=True,
            timeout=timeout,
            cwd=cwd,
            user=user,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SandboxError(f"timed out after {timeout}s: {' '.join(args[:4])}") from exc
    if check and cp.returncode != 0:
        err = (cp.stderr or b"").decode(errors="replace").strip()[-2000:]
        raise SandboxError(f"{' '.join(args[:4])} exited {cp.returncode}: {err}")
    return cp


def wait_until(what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    """Poll ``probe`` until it returns True; bounded by ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except Exception as exc:  # noqa: BLE001 - probes may fail while a service starts
            last = exc
        time.sleep(interval)
    raise SandboxError(f"{what} not ready after {timeout}s" + (f": {last}" if last else ""))


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text().split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def alive(pid: int | None, exe_hint: str | None = None) -> bool:
    """True when ``pid`` is a live (non-zombie) process, whose cmdline mentions ``exe_hint`` if given."""
    if not pid or pid <= 0:
        return False
    for child in _CHILDREN:
        child.poll()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state = stat.rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
        if exe_hint is not None:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            return exe_hint in cmdline
        return True
    except (OSError, IndexError):
        return False


def pid_alive(pid_file: Path, exe_hint: str | None = None) -> int | None:
    pid = read_pid(pid_file)
    return pid if pid is not None and alive(pid, exe_hint) else None


def spawn(
    argv: Sequence[str | Path],
    *,
    pid_file: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> int:
    """Start a long-running process in its own session, detached from our stdio; write its pid file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
            user=user,
            cwd=cwd,
        )
    _CHILDREN.append(proc)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def exited_early(pid: int) -> bool:
    return not alive(pid)


def stop_pid(pid: int, *, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to one process (by pid), wait up to ``timeout`` s, then SIGKILL it."""
    if not alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_until(f"pid {pid} to die", lambda: not alive(pid), 5)


def stop_pid_file(pid_file: Path, *, exe_hint: str | None = None, timeout: float = 15.0) -> None:
    pid = pid_alive(pid_file, exe_hint)
    if pid is not None:
        stop_pid(pid, timeout=timeout)
    pid_file.unlink(missing_ok=True)


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text`` (used to find leftovers under a dir)."""
    found: list[int] = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root`` (deepest first), from /proc/self/mountinfo."""
    prefix = str(root.resolve())
    points: list[Path] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return points
    for line in lines:
        parts = line.split()
        if len(parts) < 5:
            continue
        mp = parts[4].replace("\\040", " ")
        if mp == prefix or mp.startswith(prefix + "/"):
            points.append(Path(mp))
    return sorted(points, key=lambda p: len(str(p)), reverse=True)


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (children first level first)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            out.append(child)
            queue.append(child)
    return out
