"""Step types that need no external service: shell.run, file.write, check.http, check.tcp, approval."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from migrator import redact
from migrator.adapters.checks import http_check, tcp_check
from migrator.adapters.localproc import run_child
from migrator.adapters.ssh import session_for
from migrator.errors import GateNotReady, PermanentError, TemporaryError
from migrator.runbook.model import HttpCheck, TcpCheck
from migrator.steps.base import Check, Plan, ReadOnlyStep, Step, StrictModel, state_file, step_type
from migrator.store.atomic import write_atomic

Command = str | list[str]

# What a shell.run command gets from migrate's own environment: only this, plus the runbook's `env:`.
# Never the rest (migrate's environment may hold resolved secrets, tokens, MIGRATE_* knobs).
BASELINE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/",
                "LANG": "C.UTF-8"}


def child_env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: os.environ.get(k) or default for k, default in BASELINE_ENV.items()}
    return {**base, **extra}


def _argv(command: Command) -> list[str]:
    # A string is a shell snippet, run by an explicit /bin/sh; a list is an argv, run as is.
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


class ShellParams(StrictModel):
    command: Command
    creates: str | None = None  # done when this path exists
    unless: Command | None = None  # done when this command exits 0
    undo: Command | None = None  # rollback command
    verify: Command | None = None  # gate command: exit 0 when healthy
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    # Where the commands run: here, or on the VPS over the run's SSH session (environment.source.ssh),
    # `creates:` then being a path there.
    on: Literal["local", "source"] = "local"


@step_type("shell.run")
class ShellRun(Step[ShellParams]):
    """Run a command; idempotent through `creates:` or `unless:`; undone by `undo:`."""

    argv_fields = ("command", "unless", "undo", "verify")

    def _run(self, command: Command, what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.params.on == "source":
            return self._run_remote(command, what, check)
        cwd = self.ctx.path(self.params.cwd) if self.params.cwd else self.ctx.runbook.dir
        argv = _argv(command)
        if shutil.which(argv[0], path=child_env(self.params.env)["PATH"]) is None and "/" not in argv[0]:
            raise PermanentError(f"{what}: {argv[0]}: not found")
        if not cwd.is_dir():
            raise PermanentError(f"{what}: working directory {cwd} does not exist")
        # Its own process group, dying with migrate, recorded in the state before it runs (children.py).
        proc = run_child(argv, what=what, env=child_env(self.params.env), cwd=cwd,
                         timeout=max(1.0, self.ctx.remaining()), recorder=self.ctx.child_recorder())
        if check and proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise PermanentError(f"{what} exited {proc.returncode}: {' | '.join(tail)}")
        return proc

    def _run_remote(self, command: Command, what: str, check: bool) -> subprocess.CompletedProcess[str]:
        argv = _argv(command)
        if self.params.cwd:
            argv = ["/bin/sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", self.params.cwd, *argv]
        ssh = session_for(self.ctx)
        try:
            # Marked and recorded in the state before it starts (remoteproc): a resume after a crash finds
            # it still running on the VPS and waits for it or stops it.
            res = ssh.run(argv, env=self.params.env or None, timeout=max(1.0, self.ctx.remaining()))
        except TemporaryError as exc:
            # Not retried here: the command may still run on the VPS (a timeout or a dropped connection
            # does not stop it). Its record stays; `migrate resume` waits for it or stops it first.
            raise PermanentError(f"{what} on {ssh.label}: {exc}; `migrate resume` looks for it on the VPS "
                                 "and waits for it or stops it before running the step again") from None
        out, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
        if check and res.rc != 0:
            tail = (err or out).strip().splitlines()[-3:]
            raise PermanentError(f"{what} on {ssh.label} exited {res.rc}: {' | '.join(tail)}")
        return subprocess.CompletedProcess(argv, res.rc, out, err)

    def _created(self) -> bool:
        assert self.params.creates is not None
        if self.params.on == "source":
            return self._run(["test", "-e", self.params.creates], "creates", check=False).returncode == 0
        return self.ctx.path(self.params.creates).exists()

    def check(self) -> Check:
        if self.params.creates and self._created():
            return Check(True, f"{self.params.creates} exists")
        if self.params.unless is not None:
            if self._run(self.params.unless, "unless", check=False).returncode == 0:
                return Check(True, "the `unless` command succeeded")
        return Check(False, "no `creates` path and `unless` failed" if self.params.unless else "not yet run")

    def plan(self) -> Plan:
        return Plan(changes=[f"run: {self.params.command}"],
                    unknowns=[] if (self.params.creates or self.params.unless) else ["no creates/unless: it runs every time"])

    def apply(self) -> None:
        self._run(self.params.command, "command")

    def verify(self) -> None:
        if self.params.verify is not None:
            proc = self._run(self.params.verify, "verify", check=False)
            if proc.returncode != 0:
                raise GateNotReady(f"verify command exited {proc.returncode}")

    def rollback(self) -> None:
        if self.params.undo is None:
            raise PermanentError(f"{self.ctx.step_id}: no `undo:` command to roll back with")
        self._run(self.params.undo, "undo")

    def rollback_plan(self) -> Plan:
        return Plan(changes=[f"run: {self.params.undo}" if self.params.undo else "nothing: no undo command"])


class FileParams(StrictModel):
    path: str
    content: str
    # Default: 0600 when the content holds a secret (a ${secrets.x} resolved into it), else 0644.
    mode: int | None = Field(default=None, ge=0, le=0o7777)


@step_type("file.write")
class FileWrite(Step[FileParams]):
    """Write a file; rollback restores what was there (kept in a 0600 backup file, not in the state)."""

    def _target(self) -> Path:
        return self.ctx.path(self.params.path)

    def _mode(self) -> int:
        if self.params.mode is not None:
            return self.params.mode
        # Every secret value resolved for this step is registered for masking: masking changes the text
        # exactly when the content holds one.
        return 0o600 if redact.redact(self.params.content) != self.params.content else 0o644

    def _backup(self) -> Path:
        return state_file(self.ctx, "backups", f"{self.ctx.step_id}.bak")

    def check(self) -> Check:
        target = self._target()
        if target.is_file() and target.read_bytes() == self.params.content.encode():
            return Check(True, f"{target} has the expected content")
        return Check(False, f"{target} differs" if target.exists() else f"{target} does not exist")

    def plan(self) -> Plan:
        target = self._target()
        return Plan(changes=[f"{'replace' if target.exists() else 'create'} {target} "
                             f"({len(self.params.content.encode())} bytes)"])

    def apply(self) -> None:
        target = self._target()
        if "existed" not in self.ctx.facts:  # first attempt only: later ones would back up our own write
            existed = target.is_file()
            sha = None
            mode = None
            if existed:
                data = target.read_bytes()
                sha = hashlib.sha256(data).hexdigest()
                mode = target.stat().st_mode & 0o7777
                write_atomic(self._backup(), data)
            self.ctx.record(existed=existed, previous_sha256=sha, previous_mode=mode,
                            backup=str(self._backup()) if existed else None)
        write_atomic(target, self.params.content.encode(), mode=self._mode())

    def rollback(self) -> None:
        facts = self.ctx.facts
        target = self._target()
        if "existed" not in facts:
            return  # apply never started: nothing to undo
        if facts["existed"]:
            data = Path(facts["backup"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != facts["previous_sha256"]:
                raise PermanentError(f"backup {facts['backup']} does not match its recorded checksum; not restored")
            write_atomic(target, data, mode=facts.get("previous_mode") or 0o600)
        else:
            target.unlink(missing_ok=True)

    def rollback_plan(self) -> Plan:
        facts = self.ctx.facts
        if facts.get("existed"):
            return Plan(changes=[f"restore {self._target()} from {facts.get('backup')}"])
        return Plan(changes=[f"remove {self._target()}"])


class HttpParams(HttpCheck):
    pass


@step_type("check.http")
class CheckHttp(ReadOnlyStep[HttpParams]):
    def verify(self) -> None:
        http_check(self.params)


class TcpParams(TcpCheck):
    pass


@step_type("check.tcp")
class CheckTcp(ReadOnlyStep[TcpParams]):
    def verify(self) -> None:
        tcp_check(self.params)


class ApprovalParams(StrictModel):
    prompt: str = "Continue?"


@step_type("approval")
class Approval(Step[ApprovalParams]):
    """A manual gate: an answer at the terminal, or `--approve STEP` (--yes does not answer it)."""

    def check(self) -> Check:
        at = self.ctx.facts.get("approved_at")
        return Check(bool(at), f"approved at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))}" if at else "")

    def plan(self) -> Plan:
        return Plan(changes=[f"ask: {self.params.prompt}"], unknowns=["the operator's answer"])

    def apply(self) -> None:
        if not self.ctx.confirm(f"[{self.ctx.step_id}] {self.params.prompt}"):
            raise PermanentError(f"{self.ctx.step_id}: not approved (answer on a terminal, or pass "
                                 f"--approve {self.ctx.step_id})")
        self.ctx.record(approved_at=time.time(), approved_by=os.environ.get("USER", "?"))

    def rollback(self) -> None:
        pass


