"""Several steps at once (`migrate run --parallel N`): which step may start, the worker threads, a failure,
Ctrl-C.

A step starts when every step it `needs` has succeeded (or was done already), every selected step of the
earlier phases has finished (a phase is a barrier, as in a serial run), fewer than N steps run, and no
running step shares its step type's `exclusive` group (one compose freeze/thaw at a time on the VPS).
Among the steps that may start, file order (the serial order) decides. Within a phase, `needs` is then
the only ordering: a phase file meant for --parallel must say what each step waits for.

Each step runs `Engine._execute` in its own thread. The state and the journal have one writer: every
transition is made under the session's lock (`Session.guard`) and saved atomically before the step goes
on, so a SIGKILL with several steps running leaves each of them `running` in the state, and `migrate
resume` checks each again, as after a crash with one.

When a step fails, no new step starts; the running ones finish and are recorded, then the first failure
is raised (its exit code is the run's). The first Ctrl-C (or SIGTERM/SIGHUP) stops new starts and
interrupts the running steps: their local child processes are stopped, their sleeps, retries and gates
wake, and each is recorded `interrupted` at its next stage; a step inside a long remote call finishes
that call first. A second Ctrl-C leaves at once: nothing more is written, the steps still running stay
`running` in the state (crash semantics), and their local children die with the process.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from migrator.adapters.localproc import interrupt_recorded
from migrator.errors import Interrupted
from migrator.runbook.model import Step as RunbookStep

if TYPE_CHECKING:
    from migrator.engine.engine import Engine

SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}  # what Session.locked turns into KeyboardInterrupt
POLL_S = 0.2  # how often the scheduler looks at its workers when none reports (a lost wake-up is harmless)


@dataclass
class _Worker:
    step: RunbookStep
    thread: threading.Thread | None = None
    error: BaseException | None = None
    ended: bool = False
    group: str | None = None


@dataclass
class Scheduler:
    engine: Engine
    steps: list[RunbookStep]
    selected: set[str]
    limit: int
    running: dict[str, _Worker] = field(default_factory=dict)
    todo: set[str] = field(default_factory=set)  # selected and not done already: what this run runs
    finished: set[str] = field(default_factory=set)  # ended in this run (any outcome)
    succeeded: set[str] = field(default_factory=set)
    failure: BaseException | None = None
    interrupted: bool = False
    _wake: threading.Event = field(default_factory=threading.Event)

    def run(self) -> int:
        e, s = self.engine, self.engine.session
        pending: list[RunbookStep] = []
        for step in self.steps:
            with s.guard:
                s.state.step(step.id).phase = step.phase
            if e._to_run(step):
                pending.append(step)
            else:
                s.progress.step_finished()
        self.todo = {x.id for x in pending}
        ran = 0
        while pending or self.running:
            try:
                if self.failure is None and not self.interrupted:
                    ran += self._start_ready(pending)
                    if not self.running and pending and self.failure is None:
                        # Nothing runs and nothing may start: a need that is neither selected nor done,
                        # which _check_needs explains (as the serial run does at that step's turn).
                        e._check_needs(pending[0], self.selected)
                        raise AssertionError(f"scheduler: {pending[0].id} can never start")  # pragma: no cover
                if not self.running:
                    break
                self._wake.wait(POLL_S)
                self._wake.clear()
                self._collect()
            except KeyboardInterrupt:
                if self.interrupted:
                    self._abandon()
                    raise Interrupted(f"interrupted again: left with {len(self.running)} step(s) still running "
                                      f"({', '.join(self.running)}); `migrate resume` checks them again") from None
                self._interrupt()
            except Exception as exc:  # a need that cannot be met (or a bug): no new start, the running ones end
                if self.failure is None:
                    self.failure = exc
            if self.failure is not None or self.interrupted:
                pending = []
        if self.interrupted:
            raise Interrupted("interrupted; the running steps were stopped and recorded; run `migrate resume` "
                              "to continue")
        if self.failure is not None:
            raise self.failure
        return ran

    # -- starting --------------------------------------------------------------------------------
    def _ready(self, step: RunbookStep, first_phase: int) -> bool:
        if step.phase != first_phase or len(self.running) >= self.limit:
            return False
        for need in step.spec.needs:
            if need in self.todo and need not in self.succeeded:
                return False  # selected, not done yet (a failed one stops the run before this matters)
        group = getattr(step.step_type, "exclusive", None)
        return not (group and any(w.group == group for w in self.running.values()))

    def _start_ready(self, pending: list[RunbookStep]) -> int:
        e, s = self.engine, self.engine.session
        started = 0
        phases = [x.phase for x in pending] + [w.step.phase for w in self.running.values()]
        first_phase = min(phases)
        for step in list(pending):
            if not self._ready(step, first_phase):
                continue
            e._check_needs(step, self.selected)  # a need neither selected nor done: RefusedError
            pending.remove(step)
            worker = _Worker(step, group=getattr(step.step_type, "exclusive", None))
            worker.thread = threading.Thread(target=self._work, args=(worker,), name=f"step-{step.id}", daemon=True)
            # Ctrl-C held back while the thread starts: an interruption in the middle of start() could leave
            # a thread running that the scheduler does not know of. It is delivered right after.
            signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
            try:
                worker.thread.start()
                self.running[step.id] = worker
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            s.progress.step_running(step.phase, step.id, len(self.finished), len(self.steps))
            started += 1
        return started

    def _work(self, worker: _Worker) -> None:
        # The thread was started with the signals blocked (see above); its children must not inherit that.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        try:
            self.engine._execute(worker.step)
        except BaseException as exc:  # recorded by _execute; the scheduler decides what it means
            worker.error = exc
        finally:
            self.engine.session.live.step_ended(worker.step.id)
            worker.ended = True
            self._wake.set()

    # -- ending ----------------------------------------------------------------------------------
    def _collect(self) -> None:
        s = self.engine.session
        for sid, worker in list(self.running.items()):
            thread = worker.thread
            if not worker.ended and thread is not None and thread.is_alive():
                continue
            if thread is not None:
                thread.join()
            del self.running[sid]
            self.finished.add(sid)
            s.progress.step_ended(sid)
            if worker.error is None:
                self.succeeded.add(sid)
            elif isinstance(worker.error, Interrupted) and s.stopping.is_set():
                pass  # the interruption we asked for: recorded by the step
            elif self.failure is None:
                self.failure = worker.error
                if self.running:
                    self.engine.say(f"  {sid} failed: no new step starts; waiting for "
                                    f"{', '.join(self.running)} to finish")

    def _interrupt(self) -> None:
        s = self.engine.session
        self.interrupted = True
        s.stopping.set()
        if not self.running:
            return
        self.engine.say(f"interrupted: stopping {', '.join(self.running)} (Ctrl-C again to leave at once; "
                        "`migrate resume` then checks them again)")
        for sid in list(self.running):
            with s.guard:
                processes = [dict(p) for p in s.state.step(sid).processes]
            interrupt_recorded(processes)

    def _abandon(self) -> None:
        s = self.engine.session
        with s.guard:  # waits for a transition being written: the files stay whole
            s.abandoned = True
