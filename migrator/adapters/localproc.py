"""Local child processes of a step: in their own process group, dying with migrate, recorded in the state.

Every command a step runs on this machine goes through `run_child`:

- it starts in a new session (its own process group), so that a timeout or a Ctrl-C stops the whole
  group (a shell's children included), never just the shell;
- where Linux offers it (`setpriv --pdeathsig`, util-linux), its wrapper gets SIGTERM when migrate dies
  (kill -9 included) and then kills its whole group: nothing of a dead run keeps going;
- its pid, process group and start time are recorded in the step's state record BEFORE it runs: the
  wrapper waits on a pipe for the word "go", written only once the state file holds the record. If
  migrate dies before that, the wrapper reads EOF and exits without running anything;
- on resume, `settle` finds a recorded group that still has live members (same pid and same start time,
  so a reused pid is not taken for it), waits for it, then stops it, and says so (journal and operator)
  before the step is checked again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrator.errors import Interrupted, PermanentError
from migrator.store.procs import ProcessId, boot_id, is_zombie, pdeathsig_prefix, start_ticks

# Waits for "go" on its stdin (the gate pipe), then runs "$@" in the background of a shell that kills its whole group when it
# is told to stop (the parent-death signal is SIGTERM, so that this trap can run).
_WRAPPER = (
    'IFS= read -r go || exit 125; [ "$go" = go ] || exit 125; '
    'trap "trap - TERM HUP INT; kill -9 0" TERM HUP INT; '
    '"$@" </dev/null & child=$!; wait "$child"; rc=$?; exit "$rc"'
)
STOP_GRACE_S = 5.0


def wrapped(argv: list[str]) -> list[str]:
    return [*pdeathsig_prefix(), "/bin/sh", "-c", _WRAPPER, "migrator-child", *argv]


class Recorder:
    """How a child is recorded: `add` before it runs (persisted), `remove` (its pid, or a remote command's
    marker) once it is gone."""

    def __init__(self, add: Callable[[dict[str, Any]], None], remove: Callable[[int | str], None]) -> None:
        self.add = add
        self.remove = remove


def run_child(argv: list[str], *, what: str, env: dict[str, str], cwd: Path | None, timeout: float,
              recorder: Recorder | None) -> subprocess.CompletedProcess[str]:
    """Run argv to completion (output captured) under the rules above; raises PermanentError on timeout."""
    gate_r, gate_w = os.pipe()
    try:
        # No preexec_fn (unsafe beside threads): the gate is the child's stdin, the group a new session.
        proc = subprocess.Popen(wrapped(argv), env=env, cwd=cwd, stdin=gate_r, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True, close_fds=True)
    except FileNotFoundError as exc:
        os.close(gate_r)
        os.close(gate_w)
        raise PermanentError(f"{what}: {exc.strerror}: {exc.filename}") from None
    except OSError as exc:
        os.close(gate_r)
        os.close(gate_w)
        raise PermanentError(f"{what}: cannot start: {exc.strerror}") from None
    os.close(gate_r)
    recorded = False
    try:
        if recorder is not None:
            recorder.add({"kind": "local", "what": what, "started_at": time.time(), "pid": proc.pid,
                          "pgid": proc.pid, "start_ticks": start_ticks(proc.pid), "host": os.uname().nodename,
                          "boot": boot_id()})
            recorded = True
        os.write(gate_w, b"go\n")
        os.close(gate_w)
        gate_w = -1
        try:
            out, err = proc.communicate(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            stop_group(proc.pid, proc)
            proc.communicate()
            raise PermanentError(f"{what} timed out after {timeout:.0f}s (its process group was stopped)") from None
    except BaseException:
        if proc.poll() is None:
            stop_group(proc.pid, proc)  # Ctrl-C or an error of ours: never leave the group running
        with contextlib.suppress(Exception):
            proc.communicate(timeout=STOP_GRACE_S)
        raise
    finally:
        if gate_w >= 0:
            os.close(gate_w)  # the child reads EOF and exits without running anything
        if recorded and recorder is not None and proc.poll() is not None:
            recorder.remove(proc.pid)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def group_members(pgid: int, leader_start: int | None) -> list[int]:
    """Live processes of process group `pgid` started no earlier than its leader (pid reuse guard)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        rest = raw[raw.rfind(b")") + 2:].split()
        try:
            state, pgrp, started = rest[0], int(rest[2]), int(rest[19])
        except (IndexError, ValueError):
            continue
        if pgrp != pgid or state == b"Z":
            continue
        if leader_start is not None and started < leader_start:
            continue
        found.append(int(entry))
    return found


def stop_group(pgid: int, proc: subprocess.Popen[str] | None = None, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM to the group, SIGKILL after `grace` seconds to whatever is left of it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is None:
            time.sleep(0.05)
            continue
        if not group_members(pgid, None):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def interrupt_recorded(processes: list[dict[str, Any]]) -> list[int]:
    """SIGTERM to the process groups of these recorded local children that are still the ones recorded
    (same leader start time): their wrapper then kills its whole group, and the `run_child` waiting for
    it in a step's thread returns. For a parallel run's Ctrl-C, which reaches only the main thread.
    Returns the groups signalled."""
    hit: list[int] = []
    for rec in processes:
        if rec.get("kind") != "local" or not rec.get("pid"):
            continue
        pgid = int(rec.get("pgid") or rec["pid"])
        recorded = rec.get("start_ticks")
        if recorded is not None and start_ticks(pgid) != recorded:
            continue  # gone, or the pid is another process's now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
            hit.append(pgid)
    return hit


def settle(processes: list[dict[str, Any]], *, wait_s: float, say: Callable[[str], None],
           journal: Callable[..., None]) -> list[dict[str, Any]]:
    """Wait for, then stop, the recorded local processes of an earlier run that still live.

    Returns the records it could not settle here (remote ones, for their step to handle)."""
    left: list[dict[str, Any]] = []
    for rec in processes:
        if rec.get("kind") != "local":
            left.append(rec)
            continue
        ident = ProcessId(pid=int(rec["pid"]), start=rec.get("start_ticks"), host=str(rec.get("host", "")),
                          boot=str(rec.get("boot", "")))
        if ident.host and ident.host != os.uname().nodename:
            raise PermanentError(
                f"{rec.get('what')} (pid {ident.pid}) was started on host {ident.host}, not this one: cannot tell "
                "whether it still runs; resume on that host, or make sure it ended and `migrate stamp` the step")
        if ident.boot and ident.boot != boot_id():
            continue  # the machine rebooted since: nothing of that run survives
        pgid = int(rec.get("pgid") or ident.pid)
        leader = start_ticks(pgid)
        if leader is not None and ident.start is not None and leader != ident.start:
            continue  # that pid is another process now, leading a group of its own: not ours
        # With the leader gone, live members of the group are still ours: Linux does not hand out a pid
        # that is in use as a process group id.
        members = group_members(pgid, ident.start)
        if not members:
            continue
        say(f"  {rec.get('what')} of an interrupted run is still running (pid {ident.pid}, process group {pgid}): "
            f"waiting up to {wait_s:.0f}s for it before checking again")
        journal("orphan-waiting", pid=ident.pid, pgid=pgid, members=members, what=rec.get("what"), wait_s=wait_s)
        deadline = time.monotonic() + wait_s
        try:
            while members and time.monotonic() < deadline:
                time.sleep(0.2)
                members = group_members(pgid, ident.start)
        except KeyboardInterrupt:
            raise Interrupted("interrupted while waiting for a process of an earlier run") from None
        if not members:
            journal("orphan-finished", pid=ident.pid, pgid=pgid, what=rec.get("what"))
            say(f"  pid {ident.pid} ended on its own")
            continue
        stop_group(pgid)
        still = [p for p in group_members(pgid, ident.start) if not is_zombie(p)]
        journal("orphan-stopped", pid=ident.pid, pgid=pgid, what=rec.get("what"), left=still)
        if still:
            raise PermanentError(f"pid {ident.pid} of an interrupted run (process group {pgid}) could not be "
                                 f"stopped: {still} still run; stop them, then resume")
        say(f"  stopped process group {pgid} (pid {ident.pid}) after {wait_s:.0f}s")
    return left
