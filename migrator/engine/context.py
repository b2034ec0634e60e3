"""The StepContext the engine hands each step (see migrator.steps.base.StepContext)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from migrator import logs
from migrator.adapters import remoteproc
from migrator.adapters.localproc import Recorder
from migrator.errors import Interrupted
from migrator.progress import ask
from migrator.runbook.model import Runbook
from migrator.steps.base import Progress

if TYPE_CHECKING:
    from migrator.engine.session import Session
    from migrator.runbook.model import Step as RunbookStep

M = TypeVar("M", bound=BaseModel)


class Context:
    def __init__(self, session: Session, step: RunbookStep, deadline: float, dry_run: bool) -> None:
        self._session = session
        self._step = step
        self.step_id = step.id
        self.phase = step.phase
        self.runbook: Runbook = session.runbook
        self.state_dir: Path = session.state_dir
        self.dry_run = dry_run
        self.deadline = deadline
        self.log = logs.get(step=step.id, phase=step.phase)

    @property
    def facts(self) -> dict[str, Any]:
        return self._session.state.step(self.step_id).facts

    def record(self, **facts: Any) -> None:
        if self.dry_run:
            raise RuntimeError(f"{self.step_id}: record() called during a dry run")
        with self._session.guard:
            self._session.state.step(self.step_id).facts.update(facts)
            self._session.save()
            self._session.journal.append("facts", step=self.step_id, keys=sorted(facts))

    def child_recorder(self) -> Recorder | None:
        if self.dry_run:
            return None  # a dry run's `unless` check records nothing (and writes no state)
        rec = self._session.state.step(self.step_id)

        def add(doc: dict[str, Any]) -> None:
            with self._session.guard:
                rec.processes.append(doc)
                self._session.save()

        def remove(key: int | str) -> None:  # a local pid, or a remote command's marker
            with self._session.guard:
                rec.processes[:] = [p for p in rec.processes if p.get("pid") != key and p.get("marker") != key]
                self._session.save()

        return Recorder(add, remove)

    def journal(self, event: str, **fields: Any) -> None:
        """An audit entry in the journal, tagged with this step (masked like every journal line)."""
        self._session.journal.append(event, step=self.step_id, **fields)

    def facts_of(self, step_id: str) -> dict[str, Any]:
        rec = self._session.state.steps.get(step_id)
        return dict(rec.facts) if rec else {}

    def facts_as(self, model: type[M], step_id: str | None = None) -> M:
        return model.model_validate(self.facts if step_id is None else self.facts_of(step_id))

    def status_of(self, step_id: str) -> str:
        rec = self._session.state.steps.get(step_id)
        return rec.status if rec else "pending"

    def finished_at(self, step_id: str) -> float | None:
        rec = self._session.state.steps.get(step_id)
        return rec.finished_at if rec and rec.status == "succeeded" else None

    def secret(self, name: str) -> str:
        return self._session.secrets.get(name)

    def failpoint(self, where: str) -> None:
        self._session.failpoints.hit(self.step_id, where)

    def progress(self, description: str, total: float | None = None, unit: str = "") -> Progress:
        task = self._session.progress.task(description, total, unit, owner=self.step_id)
        if self.dry_run:
            return task
        return self._session.live.track(self.step_id, description, total, unit, task)

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        # A step reaches the VPS only through a shared resource: from here on, the remote commands this
        # thread starts are recorded in this step's state (migrator.adapters.remoteproc).
        remoteproc.bind(self.child_recorder())
        return self._session.resource(key, factory)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def sleep(self, seconds: float) -> None:
        # In the main thread time.sleep is interrupted by SIGINT (KeyboardInterrupt); in a parallel run's
        # worker thread the session's stop event wakes it (Session.nap).
        try:
            self._session.nap(seconds)
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None

    def confirm(self, prompt: str) -> bool:
        opts = self._session.options
        # --yes is the production guard's answer only; an approval gate needs its own --approve STEP
        # or an answer at the terminal.
        if opts.approve_all or self.step_id in opts.approved:
            return True
        if not opts.interactive:
            return False

        return ask(f"{prompt} [y/N] ").strip().lower() in ("y", "yes")

    def path(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self.runbook.dir / p)
