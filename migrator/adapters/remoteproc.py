"""Remote processes of a step (over SSH, or `docker exec` on the VPS): marked, recorded, found again.

A command the migrator starts on the VPS does not die with migrate: when migrate is killed, sshd and
dockerd let it run on (only its input ends and its output fails). So that a resume never runs a step
beside a still-running remote command of the crashed attempt:

- every remote command carries `MIGRATOR_PROC=<marker>` in its environment (inherited by whatever it
  starts): a random 16-hex-digit marker, not a secret, one per command;
- the step's state record keeps the marker (with how to reach the command again: `ssh:source`, or
  `docker:source` plus container and user) BEFORE the command starts, and drops it once the command is
  known to have ended;
- on resume, `settle` asks the same host, through the same way in (the run's SSH session, or an exec in
  the same container as the same user), for the processes whose environment holds the marker (a scan
  of /proc/*/environ); it waits for them up to a bound, then sends SIGTERM, then SIGKILL, journals what it
  did, and only then is the step checked again.

The recorder is the one of the step running on this thread: `bind` is called when a step asks for a
shared resource (its Context), so the adapters need no step argument.
"""

from __future__ import annotations

import contextvars
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from migrator.adapters import resources
from migrator.adapters.lazy import lazy
from migrator.adapters.localproc import Recorder
from migrator.errors import Interrupted, PermanentError

if TYPE_CHECKING:
    import docker.errors
else:
    docker = lazy("docker")

MARKER_ENV = "MIGRATOR_PROC"
STOP_GRACE_S = 5.0
POLL_S = 0.3

# Prints "procs: PID..." for the processes whose environment holds MIGRATOR_PROC=$1 (not itself: its own
# environment does not), after sending them signal $2 (none, TERM or KILL). `grep -lzxF` on
# /proc/*/environ (NUL-separated entries, each matched whole; GNU grep and BusyBox's alike): one process.
FINDER = (
    'm=$1; sig=$2; [ -d /proc/self ] || { echo "no /proc here" >&2; exit 3; }; '
    'found=$(grep -l -z -x -F "MIGRATOR_PROC=$m" /proc/[0-9]*/environ 2>/dev/null | '
    "sed -e 's#^/proc/##' -e 's#/environ$##' | tr '\\n' ' '); "
    'if [ -n "$found" ] && [ "$sig" != none ]; then kill -s "$sig" $found 2>/dev/null; fi; '
    'echo "procs: $found"'
)


_current: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("migrator_remote_recorder", default=None)


def bind(recorder: Recorder | None) -> None:
    """Remote commands started from this thread from now on are recorded with `recorder` (None: not)."""
    _current.set(recorder)


def new_marker() -> str:
    return secrets.token_hex(8)


def start(what: str, via: str, **where: str | None) -> tuple[str, Callable[[], None]]:
    """A marker for a remote command about to start, recorded (state saved) before it starts; returns the
    marker and `done`, to call once the command is known to have ended."""
    marker = new_marker()
    recorder = _current.get()
    if recorder is None:
        return marker, lambda: None
    recorder.add({"kind": "remote", "what": what, "started_at": time.time(), "marker": marker, "via": via,
                  **{k: v for k, v in where.items() if v is not None}})
    return marker, lambda: recorder.remove(marker)


class Finder(Protocol):
    def __call__(self, marker: str, signal: str) -> list[int]: ...


def parse_found(rc: int, out: bytes, err: bytes, where: str) -> list[int]:
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("procs:")), None)
    if rc != 0 or line is None:
        reason = (err.decode(errors="replace").strip().splitlines() or [f"exit {rc}"])[-1]
        raise PermanentError(f"cannot look for processes of an interrupted run on {where}: {reason}")
    return [int(p) for p in line[len("procs:"):].split() if p.isdigit()]


def settle(records: list[dict[str, Any]], *, finder_for: Callable[[dict[str, Any]], Finder], wait_s: float,
           say: Callable[[str], None], journal: Callable[..., None]) -> None:
    """Wait for, then stop, the recorded remote processes of an earlier run that still live."""
    bind(None)  # outside any step: what this starts (opening the Docker API included) is not recorded
    for rec in records:
        marker, what, via = str(rec.get("marker") or ""), rec.get("what"), rec.get("via")
        if len(marker) != 16:
            raise PermanentError(f"{what}: a remote process record without a usable marker ({marker!r})")
        find = finder_for(rec)
        found = find(marker, "none")
        if not found:
            continue
        say(f"  {what} of an interrupted run still runs on {via} (marker {marker}, pids {found}): "
            f"waiting up to {wait_s:.0f}s for it before checking again")
        journal("remote-orphan-waiting", marker=marker, via=via, what=what, pids=found, wait_s=wait_s)
        deadline = time.monotonic() + wait_s
        try:
            while found and time.monotonic() < deadline:
                time.sleep(POLL_S)
                found = find(marker, "none")
            if not found:
                journal("remote-orphan-finished", marker=marker, via=via, what=what)
                say(f"  {what} (marker {marker}) ended on its own")
                continue
            found = find(marker, "TERM")
            deadline = time.monotonic() + STOP_GRACE_S
            while found and time.monotonic() < deadline:
                time.sleep(POLL_S)
                found = find(marker, "none")
            if found:
                find(marker, "KILL")
                time.sleep(POLL_S)
                found = find(marker, "none")
        except KeyboardInterrupt:
            raise Interrupted("interrupted while waiting for a remote process of an earlier run") from None
        journal("remote-orphan-stopped", marker=marker, via=via, what=what, left=found)
        if found:
            raise PermanentError(f"{what} of an interrupted run (marker {marker}) could not be stopped on {via}: "
                                 f"pids {found} still run; stop them, then resume")
        say(f"  stopped {what} (marker {marker}) on {via} after {wait_s:.0f}s")


def finders(resource: Any, runbook: Any, who: str) -> Callable[[dict[str, Any]], Finder]:
    """How to look for a record's processes again: over the run's SSH session to the VPS, or by an exec
    in the same container as the same user (the run's Docker API of the VPS). Neither is marked itself."""
    def finder_for(rec: dict[str, Any]) -> Finder:
        via = rec.get("via")
        if via == resources.SSH_SOURCE:
            ssh = resources.ssh_source(resource, runbook, who)

            def over_ssh(marker: str, signal: str) -> list[int]:
                res = ssh.run(["/bin/sh", "-c", FINDER, "migrator-find", marker, signal], timeout=30, track=False)
                return parse_found(res.rc, res.stdout, res.stderr, f"ssh {ssh.label}")
            return over_ssh
        if via == resources.DOCKER_SOURCE and rec.get("container"):
            dr = resources.docker_source(resource, runbook, who)
            container, user = str(rec["container"]), rec.get("user")

            def in_container(marker: str, signal: str) -> list[int]:
                try:
                    rc, out, err = dr.exec_run(container, ["/bin/sh", "-c", FINDER, "migrator-find", marker, signal],
                                               user=user, track=False)
                except PermanentError as exc:
                    if "no such container" in str(exc):
                        return []  # gone, and what ran in it with it
                    raise
                except docker.errors.NotFound:
                    return []
                if rc != 0 and b"is not running" in err:
                    return []
                return parse_found(rc, out, err, f"container {container}")
            return in_container
        raise PermanentError(f"{rec.get('what')}: started through {via}, which this version cannot reach again; make "
                             "sure it ended, then `migrate stamp` the step or resume once it is gone")
    return finder_for
