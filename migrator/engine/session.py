"""What one `migrate` invocation shares, whichever step (or thread) runs: the lock, the state and its
one writer, the journal, the secrets, the run's connections (`resource`), the stop event of a parallel
run, and the step instances it builds. The engine (engine/engine.py) drives the steps over it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from migrator import logs
from migrator.engine.context import Context
from migrator.engine.failpoints import Failpoints
from migrator.engine.live import LiveProgress
from migrator.errors import Interrupted, PermanentError
from migrator.progress import RunProgress
from migrator.runbook.loader import params_model
from migrator.runbook.model import Runbook
from migrator.runbook.model import Step as RunbookStep
from migrator.runbook.secrets import SecretResolver
from migrator.steps.base import Step
from migrator.store.journal import Journal
from migrator.store.lock import RunLock
from migrator.store.state import State, StateStore


@dataclass
class Options:
    dry_run: bool = False
    yes: bool = False
    accept_changes: bool = False
    approved: set[str] = field(default_factory=set)  # approval steps answered by --approve
    approve_all: bool = False  # rehearsals only: the sandbox answers its own approval gates
    interactive: bool = False
    progress: bool | None = None
    parallel: int | None = None  # steps at once (--parallel); None: the runbook's `parallel:` (default 1)


Say = Callable[[str], None]
# Opens the OpenBao client that `{openbao: ...}` secret references are read from, given the run's shared
# resources, the runbook and its secrets (migrator.adapters.openbao.secrets_client). The caller hands it
# in, so the engine imports no adapter.
OpenBaoForSecrets = Callable[[Callable[[str, Callable[[], Any]], Any], Runbook, SecretResolver], Any]


def state_paths(runbook: Runbook, state_dir: Path) -> tuple[Path, Path, Path]:
    return (state_dir / f"{runbook.name}.state.json", state_dir / f"{runbook.name}.journal.jsonl",
            state_dir / f"{runbook.name}.lock")


class _SessionJournal(Journal):
    """The run's journal, written under the session's one-writer lock (and not at all once abandoned)."""

    def __init__(self, path: Path, session: Session) -> None:
        super().__init__(path)
        self._session = session

    def append(self, event: str, **fields: Any) -> None:
        with self._session.guard:
            if not self._session.abandoned:
                super().append(event, **fields)


class Session:
    def __init__(self, runbook: Runbook, state_dir: Path, options: Options, say: Say,
                 openbao: OpenBaoForSecrets | None = None) -> None:
        self.runbook = runbook
        self.state_dir = state_dir
        self.openbao = openbao
        self.options = options
        self.say = say
        state_path, journal_path, lock_path = state_paths(runbook, state_dir)
        self.store = StateStore(state_path)
        # One writer: every change of the state (and its save) and every journal line happens under this
        # lock, whichever thread runs the step (migrate run --parallel N runs steps in threads).
        self.guard = threading.RLock()
        # Set by a second Ctrl-C of a parallel run: the process leaves with steps still running, and
        # nothing more is written (their records say `running`, as after a crash; resume checks them).
        self.abandoned = False
        # Set by the first Ctrl-C of a parallel run: running steps stop at their next chance.
        self.stopping = threading.Event()
        self.journal: Journal = _SessionJournal(journal_path, self)
        self.lock = RunLock(lock_path)
        self.state: State = self.store.load(runbook.name, str(runbook.path))
        self.failpoints = Failpoints()
        self.progress = RunProgress(options.progress)
        # The copies' figures for `migrate serve` (a dry run writes nothing).
        self.live = LiveProgress(state_dir / f"{runbook.name}.progress.json", enabled=not options.dry_run)
        self._resources: dict[str, Any] = {}
        self._resource_locks: dict[str, threading.Lock] = {}
        self._resources_lock = threading.Lock()
        self.secrets = SecretResolver(runbook.file.secrets, runbook.dir, self._openbao_for_secrets)
        self.log = logs.get(runbook=runbook.name)

    # -- shared pieces -------------------------------------------------------------------------
    def save(self) -> None:
        with self.guard:
            if not self.abandoned:
                self.store.save(self.state)

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        # One object per key even when steps in threads ask at once; a lock per key, so that opening one
        # (an SSH connection) does not hold up the others, and a factory may ask for another key.
        with self._resources_lock:
            if key in self._resources:
                return self._resources[key]
            lock = self._resource_locks.setdefault(key, threading.Lock())
        with lock:
            with self._resources_lock:
                if key in self._resources:
                    return self._resources[key]
            made = factory()
            with self._resources_lock:
                self._resources[key] = made
            return made

    def nap(self, seconds: float) -> None:
        """Sleep; in a step's worker thread, wake at once with Interrupted when the run is stopping."""
        if threading.current_thread() is threading.main_thread():
            time.sleep(max(0.0, seconds))
            return
        if self.stopping.wait(max(0.0, seconds)):
            raise Interrupted("interrupted")

    def stop_point(self) -> None:
        if self.stopping.is_set():
            raise Interrupted("interrupted")

    def close_resources(self) -> None:
        with self._resources_lock:
            opened = list(self._resources.items())
        for key, res in reversed(opened):
            close = getattr(res, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # closing must never hide the run's own outcome
                    self.log.warning("close failed", resource=key, error=str(exc))
        self._resources.clear()

    def _openbao_for_secrets(self) -> Any:
        if self.runbook.environment.openbao is None:
            raise PermanentError("secret from OpenBao: the runbook has no environment.openbao")
        if self.openbao is None:
            raise PermanentError("secret from OpenBao: this engine was built without an OpenBao client "
                                 "(migrator.commands.common.new_engine gives it one)")
        return self.openbao(self.resource, self.runbook, self.secrets)

    @contextmanager
    def locked(self, command: str) -> Iterator[None]:
        self.lock.acquire(command)
        if self.lock.previous:
            self.journal.append("stale-lock-recovered", previous=self.lock.previous)
            self.say(f"recovered a stale lock left by pid {self.lock.previous.get('pid')} "
                     f"on {self.lock.previous.get('host')}")
        # Re-read once the lock is held: another process may have written it in between.
        self.state = self.store.load(self.runbook.name, str(self.runbook.path))
        # SIGINT too: a shell starts background jobs with SIGINT ignored, and an ignored Ctrl-C would
        # leave the step running with no record of it.
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

        def to_interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        for sig in previous:
            signal.signal(sig, to_interrupt)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close_resources()
            self.lock.release()

    def step_instance(self, step: RunbookStep, deadline: float, dry_run: bool) -> tuple[Step[Any], Context]:
        cls = step.step_type
        ctx = Context(self, step, deadline, dry_run)
        return cls(ctx, params_model(step, self.secrets.get)), ctx
