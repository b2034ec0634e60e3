"""The engine: ordering, check/apply/verify/rollback, retries, gates, dry-run, failpoints.

The `Session` (engine/session.py) holds what one `migrate` invocation shares: the lock, the state, the
journal, the secrets and the connections. Every state transition is saved atomically before the next action, so a crash at any
point leaves a state from which `migrate resume` continues: an interrupted step is checked again and
applied only if its effect is not there.
"""

from __future__ import annotations

import difflib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrator import logs, redact
from migrator.adapters import remoteproc
from migrator.adapters.checks import run_gate_check
from migrator.adapters.localproc import settle
from migrator.engine.session import OpenBaoForSecrets, Options, Say, Session, state_paths
from migrator.errors import (
    InputError,
    Interrupted,
    MigratorError,
    PermanentError,
    RefusedError,
    TemporaryError,
)
from migrator.progress import say as progress_say
from migrator.runbook.model import STATUSES, Runbook
from migrator.runbook.model import Step as RunbookStep
from migrator.steps.base import Plan, Step
from migrator.store.state import State

__all__ = ["APPLIED", "Engine", "OpenBaoForSecrets", "Options", "Session", "state_paths"]

ORPHAN_WAIT_S = 120.0  # how long a resume waits for a still-running child of a dead run before stopping it
APPLIED = ("succeeded", "failed", "interrupted", "running")  # statuses whose effects may be in the world


class Engine:
    def __init__(self, runbook: Runbook, state_dir: Path, options: Options | None = None, say: Say | None = None,
                 *, openbao: OpenBaoForSecrets | None = None) -> None:
        self.runbook = runbook
        self.state_dir = state_dir
        self.options = options or Options()
        self.say: Say = say or progress_say
        self.session = Session(runbook, state_dir, self.options, self.say, openbao)
        self.log = logs.get(runbook=runbook.name)

    @property
    def state(self) -> State:
        return self.session.state

    # -- selection and ordering ------------------------------------------------------------------
    def select(self, phases: list[int] | None = None, step_ids: list[str] | None = None) -> list[RunbookStep]:
        known = self.runbook.step_ids()
        for sid in step_ids or []:
            if sid not in known:
                close = difflib.get_close_matches(sid, known, n=1)
                raise InputError(f"--step {sid}: no such step in {self.runbook.path}"
                                 + (f"; did you mean {close[0]!r}?" if close else ""))
        for ph in phases or []:
            if ph not in self.runbook.phases():
                raise InputError(f"--phase {ph}: no such phase in {self.runbook.path} (phases: "
                                 f"{', '.join(map(str, self.runbook.phases()))})")
        steps = [s for s in self.ordered() if (not phases or s.phase in phases) and (not step_ids or s.id in step_ids)]
        return steps

    def ordered(self) -> list[RunbookStep]:
        """Phase by phase; within a phase, file order adjusted so every step follows what it needs."""
        by_id = {s.id: s for s in self.runbook.steps}
        done: set[str] = set()
        out: list[RunbookStep] = []

        def place(first: RunbookStep) -> None:
            # Depth-first, with an explicit stack: a `needs` chain of thousands of steps must not hit
            # Python's recursion limit.
            if first.id in done:
                return
            done.add(first.id)
            stack: list[tuple[RunbookStep, int]] = [(first, 0)]
            while stack:
                step, i = stack.pop()
                needs = step.spec.needs
                while i < len(needs):
                    need = by_id[needs[i]]
                    i += 1
                    if need.phase == step.phase and need.id not in done:
                        done.add(need.id)
                        stack.append((step, i))
                        stack.append((need, 0))
                        break
                else:
                    out.append(step)

        for phase in self.runbook.phases():
            for step in [s for s in self.runbook.steps if s.phase == phase]:
                place(step)
        return out

    def dependents(self, step_id: str) -> list[str]:
        """Every step that needs `step_id`, directly or not, in run order."""
        found: set[str] = set()
        frontier = {step_id}
        while frontier:
            nxt = {s.id for s in self.runbook.steps if set(s.spec.needs) & frontier} - found
            found |= nxt
            frontier = nxt
        return [s.id for s in self.ordered() if s.id in found]

    # -- checks before running -------------------------------------------------------------------
    def _check_changes(self, steps: list[RunbookStep]) -> None:
        changed = [s.id for s in steps
                   if self.state.steps.get(s.id) and self.state.steps[s.id].status == "succeeded"
                   and self.state.steps[s.id].digest not in (None, s.digest)]
        if changed and not self.options.accept_changes:
            raise InputError(
                f"{self.runbook.path}: the definition of completed step(s) {', '.join(changed)} changed since they "
                "ran; review the change, then pass --accept-changes to run them again"
            )

    def _check_needs(self, step: RunbookStep, selected: set[str]) -> None:
        for need in step.spec.needs:
            status = self.state.step(need).status if need in self.state.steps else "pending"
            if status not in ("succeeded", "skipped") and need not in selected:
                raise RefusedError(f"{step.id} needs {need}, which is {status}; run it first (migrate run --step {need})")

    # -- run -------------------------------------------------------------------------------------
    def run(self, phases: list[int] | None = None, step_ids: list[str] | None = None, command: str = "run") -> int:
        """Run the selected steps (all by default), skipping those already done. Returns steps run."""
        steps = self.select(phases, step_ids)
        if self.options.dry_run:
            self.plan(phases, step_ids)
            return 0
        s = self.session
        with s.locked(command):
            self._check_changes(steps)
            s.state.runbook_digest = self.runbook.digest
            s.state.extra["last_run"] = {"phases": phases or [], "steps": step_ids or []}
            s.save()
            s.journal.append("run-started", command=command, phases=phases or [], steps=step_ids or [],
                             runbook_digest=self.runbook.digest)
            selected = {x.id for x in steps}
            limit = self.parallel()
            with s.progress:
                s.progress.steps(len(steps))
                if limit == 1:
                    ran = self._run_serial(steps, selected)
                else:
                    ran = self._run_parallel(steps, selected, limit)
            s.journal.append("run-finished", command=command, steps_run=ran)
            return ran

    def parallel(self) -> int:
        """How many steps run at once: --parallel, else the runbook's `parallel:` (default 1)."""
        return max(1, self.options.parallel or self.runbook.file.parallel)

    def _to_run(self, step: RunbookStep) -> bool:
        rec = self.state.steps.get(step.id)
        if rec is None:
            return True
        changed = rec.digest not in (None, step.digest)
        return not (rec.status in ("succeeded", "skipped") and not (changed and self.options.accept_changes))

    def _run_serial(self, steps: list[RunbookStep], selected: set[str]) -> int:
        """One step at a time, in order, in this thread (the default, --parallel 1)."""
        s = self.session
        ran = 0
        for index, step in enumerate(steps, 1):
            with s.guard:
                rec = s.state.step(step.id)
                rec.phase = step.phase
            if not self._to_run(step):
                s.progress.step_finished()
                continue
            self._check_needs(step, selected)
            s.progress.step_started(step.phase, index, len(steps), step.id)
            try:
                self._execute(step)
            finally:
                s.live.step_ended(step.id)
            s.progress.step_finished()
            ran += 1
        return ran

    def _run_parallel(self, steps: list[RunbookStep], selected: set[str], limit: int) -> int:
        """Up to `limit` steps at once, each in a worker thread (see migrator/engine/scheduler.py)."""
        from migrator.engine.scheduler import Scheduler  # --parallel only: status and plan do not pay for it

        return Scheduler(self, steps, selected, limit).run()

    def resume(self) -> int:
        last = self.state.extra.get("last_run")
        if last is None:
            raise InputError(f"{self.session.store.path}: nothing to resume (no run recorded); use migrate run")
        return self.run(last.get("phases") or None, last.get("steps") or None, command="resume")

    def _execute(self, step: RunbookStep) -> None:
        s = self.session
        with s.guard:
            rec = s.state.step(step.id)
            resumed = rec.status in ("running", "interrupted", "failed")
            rec.status, rec.stage, rec.error = "running", "check", None
            rec.attempts += 1
            rec.started_at, rec.finished_at = time.time(), None
            rec.digest = step.digest
            s.save()
            s.journal.append("step-started", step=step.id, phase=step.phase, attempt=rec.attempts, resumed=resumed)
        self.say(f"▶ [{step.phase}] {step.id} ({step.spec.uses}){' — resuming' if resumed else ''}")
        started = time.monotonic()
        try:
            self._settle_children(step)
            inst, ctx = s.step_instance(step, time.monotonic() + step.spec.timeout, dry_run=False)

            def attempt() -> None:
                # Each try checks again: an earlier try (or a crashed process) may have done the work.
                s.stop_point()
                s.failpoints.hit(step.id, "before-apply")
                check = inst.check()
                if check.done:
                    s.journal.append("step-already-applied", step=step.id, reason=check.reason)
                    self.say(f"  already in place: {check.reason}" if self.parallel() == 1
                             else f"  {step.id}: already in place: {check.reason}")
                else:
                    s.stop_point()
                    with s.guard:
                        rec.stage = "apply"
                        s.save()
                    inst.apply()
                s.failpoints.hit(step.id, "after-apply")

            self._with_retries(step, attempt, "apply")
            s.stop_point()
            with s.guard:
                rec.stage = "verify"
                s.save()
            self._gate(step, inst)
            report = inst.report()
            with s.guard:
                rec.report = report
        except (KeyboardInterrupt, Interrupted):
            self._interrupted(step)
            raise Interrupted(f"{step.id}: interrupted during {rec.stage}; run `migrate resume` to continue") from None
        except Exception as exc:
            if s.stopping.is_set():
                # A parallel run being stopped: its local children were stopped under it, so this error
                # is the interruption's doing (the step is checked again on resume).
                self._interrupted(step)
                raise Interrupted(f"{step.id}: interrupted during {rec.stage} ({redact.redact(str(exc))}); "
                                  "run `migrate resume` to continue") from None
            if isinstance(exc, MigratorError):
                self._failed(step, str(exc))
            else:  # a bug or an unexpected library error: record it, then surface it
                self._failed(step, f"{exc.__class__.__name__}: {exc}")
            raise
        # The journal line first, then the state: a crash in between leaves a step the state still calls
        # running (checked again on resume, found done), never a step succeeded with no event.
        elapsed = time.monotonic() - started
        with s.guard:
            s.journal.append("step-succeeded", step=step.id, seconds=round(elapsed, 3), report=rec.report)
            rec.status, rec.stage = "succeeded", None
            rec.finished_at = time.time()
            s.save()
        self.say(f"✓ [{step.phase}] {step.id} ({elapsed:.1f}s)")

    def _settle_children(self, step: RunbookStep) -> None:
        """Processes an earlier, interrupted run of this step started and recorded: any still alive is
        waited for (at most the step's timeout, capped at ORPHAN_WAIT_S), then stopped, before the step
        is checked again; so a command is never run beside a still-running copy of itself."""
        s = self.session
        rec = s.state.step(step.id)
        if not rec.processes:
            return
        wait_s = min(step.spec.timeout, ORPHAN_WAIT_S)
        journal = lambda event, **f: s.journal.append(event, step=step.id, **f)  # noqa: E731
        left = settle(list(rec.processes), wait_s=wait_s, say=self.say, journal=journal)
        if left:  # remote ones: looked for again on the VPS, through the same way in (remoteproc)
            remoteproc.settle(left, finder_for=remoteproc.finders(s.resource, s.runbook, step.id), wait_s=wait_s,
                              say=self.say, journal=journal)
        with s.guard:
            rec.processes = []
            s.save()

    def _interrupted(self, step: RunbookStep) -> None:
        s = self.session
        with s.guard:
            rec = s.state.step(step.id)
            rec.status, rec.error = "interrupted", f"interrupted during {rec.stage}"
            rec.finished_at = time.time()
            s.journal.append("step-interrupted", step=step.id, stage=rec.stage)
            s.save()

    def _failed(self, step: RunbookStep, message: str) -> None:
        s = self.session
        with s.guard:
            rec = s.state.step(step.id)
            rec.status, rec.error = "failed", redact.redact(message)
            rec.finished_at = time.time()
            s.journal.append("step-failed", step=step.id, stage=rec.stage, error=rec.error)
            s.save()

    def _with_retries(self, step: RunbookStep, fn: Callable[[], None], what: str) -> None:
        """Temporary errors retried with exponential backoff and jitter within retries and timeout."""
        from tenacity import (  # only a run retries: status and plan do not pay for it
            RetryCallState,
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            stop_after_delay,
            wait_exponential_jitter,
        )

        s = self.session
        backoff = wait_exponential_jitter(multiplier=0.2, max=20, jitter=0.5)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, TemporaryError) and exc.delay is not None:
                return exc.delay
            return float(backoff(state))

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            with s.guard:
                rec = s.state.step(step.id)
                rec.attempts += 1
                rec.error = redact.redact(str(exc))
                s.save()
                s.journal.append("step-retry", step=step.id, stage=what, error=rec.error,
                                 next_in=round(state.next_action.sleep if state.next_action else 0, 3))
            self.say(f"  retrying {what} of {step.id}: {rec.error}")

        retrying = Retrying(
            stop=stop_after_attempt(step.spec.retries + 1) | stop_after_delay(step.spec.timeout),
            wait=wait, retry=retry_if_exception_type(TemporaryError), before_sleep=before_sleep, reraise=True,
            sleep=s.nap,
        )
        try:
            retrying(fn)
        except TemporaryError as exc:
            raise PermanentError(f"{step.id}: {what} failed after {step.spec.retries + 1} tries: {exc}") from None

    def _gate(self, step: RunbookStep, inst: Step[Any]) -> None:
        gate = step.spec.gate
        deadline = time.monotonic() + gate.timeout
        ok = 0
        last = ""
        while True:
            try:
                self.session.failpoints.hit(step.id, "before-verify")
                inst.verify()
                for check in gate.checks:
                    run_gate_check(check)
                ok += 1
                if ok >= gate.successes:
                    self.session.failpoints.hit(step.id, "after-verify")
                    self.session.journal.append("gate-passed", step=step.id, successes=ok)
                    return
            except TemporaryError as exc:  # GateNotReady included
                ok, last = 0, str(exc)
            if time.monotonic() >= deadline:
                raise PermanentError(f"{step.id}: gate failed after {gate.timeout:g}s: {last or 'not enough successes'}")
            self.session.nap(gate.interval)

    # -- plan (dry run) --------------------------------------------------------------------------
    def plan(self, phases: list[int] | None = None, step_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """What run would do, without changing anything (no state write, no lock)."""
        out = []
        s = self.session
        for step in self.select(phases, step_ids):
            rec = s.state.steps.get(step.id)
            entry: dict[str, Any] = {"id": step.id, "phase": step.phase, "uses": step.spec.uses,
                                     "status": rec.status if rec else "pending"}
            if rec and rec.status in ("succeeded", "skipped") and rec.digest in (None, step.digest):
                entry["action"] = "skip (already done)"
                out.append(entry)
                self.say(f"= [{step.phase}] {step.id}: done")
                continue
            try:
                inst, _ = s.step_instance(step, time.monotonic() + step.spec.timeout, dry_run=True)
                check = inst.check()
                if check.done:
                    entry["action"] = f"nothing to change ({check.reason})"
                    self.say(f"= [{step.phase}] {step.id}: in place ({check.reason})")
                else:
                    plan = inst.plan()
                    entry.update(action="apply", changes=plan.changes, unknowns=plan.unknowns, waits=plan.waits)
                    self._say_plan(step, plan)
            except MigratorError as exc:
                entry.update(action="cannot plan", error=redact.redact(str(exc)))
                self.say(f"? [{step.phase}] {step.id}: cannot plan: {redact.redact(str(exc))}")
            out.append(entry)
        s.close_resources()
        return out

    def _say_plan(self, step: RunbookStep, plan: Plan, verb: str = "") -> None:
        self.say(f"+ [{step.phase}] {step.id} ({step.spec.uses}){verb}")
        for c in plan.changes:
            self.say(f"    ~ {redact.redact(c)}")
        for w in plan.waits:
            self.say(f"    ⧗ {redact.redact(w)}")
        for u in plan.unknowns:
            self.say(f"    ? {redact.redact(u)}")

    # -- rollback --------------------------------------------------------------------------------
    def rollback_targets(self, step_id: str | None, phase: int | None, cascade: bool,
                         everything: bool = False) -> list[RunbookStep]:
        if everything:
            targets = self.ordered()
        elif step_id is not None:
            targets = self.select(None, [step_id])
        elif phase is not None:
            targets = self.select([phase], None)
        else:
            raise InputError("rollback: give --step ID, --phase N or --all")
        applied = {sid for sid, rec in self.state.steps.items() if rec.status in APPLIED}
        target_ids = {t.id for t in targets}
        blocking: list[str] = []
        for t in targets:
            blocking += [d for d in self.dependents(t.id) if d in applied and d not in target_ids and d not in blocking]
        if blocking and not cascade:
            raise RefusedError(
                f"cannot roll back {step_id or f'phase {phase}'}: still applied and depending on it: "
                f"{', '.join(blocking)}; roll those back first or pass --cascade"
            )
        chosen = target_ids | set(blocking)
        order = [s for s in reversed(self.ordered()) if s.id in chosen and s.id in applied]
        # Point of no return: once such a step succeeded, nothing before it (nor itself) is undone.
        run_order = [s.id for s in self.ordered()]
        for ponr in (s for s in self.runbook.steps if s.spec.point_of_no_return):
            rec = self.state.steps.get(ponr.id)
            if rec and rec.status == "succeeded":
                late = [s.id for s in order if run_order.index(s.id) <= run_order.index(ponr.id)]
                if late:
                    raise RefusedError(f"cannot roll back {', '.join(late)}: the point of no return {ponr.id} "
                                       "has passed; `migrate stamp` records a manual undo")
        for s in order:
            cls = s.step_type
            if not s.spec.rollback or not cls.reversible:
                raise RefusedError(f"{s.id} ({s.spec.uses}) cannot be rolled back"
                                   + ("" if cls.reversible else " by nature") + "; nothing was undone")
        return order

    def rollback(self, step_id: str | None = None, phase: int | None = None, cascade: bool = False,
                 everything: bool = False) -> int:
        order = self.rollback_targets(step_id, phase, cascade, everything)
        s = self.session
        if self.options.dry_run:
            for step in order:
                inst, _ = s.step_instance(step, time.monotonic() + step.spec.timeout, dry_run=True)
                self._say_plan(step, inst.rollback_plan(), " — rollback")
            s.close_resources()
            return len(order)
        if not order:
            self.say("nothing to roll back")
            return 0
        with s.locked("rollback"):
            order = self.rollback_targets(step_id, phase, cascade, everything)  # again, under the lock
            for step in order:
                self._rollback_one(step)
        return len(order)

    def _rollback_one(self, step: RunbookStep) -> None:
        s = self.session
        rec = s.state.step(step.id)
        rec.stage, rec.error = "rollback", None
        s.save()
        s.journal.append("rollback-started", step=step.id, from_status=rec.status)
        self.say(f"↶ [{step.phase}] {step.id}")
        try:
            self._settle_children(step)
            inst, _ = s.step_instance(step, time.monotonic() + step.spec.timeout, dry_run=False)
            s.failpoints.hit(step.id, "before-rollback")
            self._with_retries(step, inst.rollback, "rollback")
            s.failpoints.hit(step.id, "after-rollback")
        except (KeyboardInterrupt, Interrupted):
            rec.error = "interrupted during rollback"
            s.save()
            s.journal.append("rollback-interrupted", step=step.id)
            raise Interrupted(f"{step.id}: interrupted during rollback; run the rollback again") from None
        except MigratorError as exc:
            rec.error = redact.redact(f"rollback failed: {exc}")
            s.save()
            s.journal.append("rollback-failed", step=step.id, error=rec.error)
            raise
        # The facts described an apply that is now undone: a later run starts from the world as it is,
        # not from a stale record (a check() must not find "done" in them).
        undone = sorted(rec.facts)
        s.journal.append("rollback-succeeded", step=step.id, facts_cleared=undone)
        rec.status, rec.stage, rec.rolled_back_at, rec.facts, rec.report = "rolled_back", None, time.time(), {}, {}
        s.save()
        self.say(f"✓ rolled back {step.id}")

    # -- stamp, status ---------------------------------------------------------------------------
    def stamp(self, step_id: str, status: str) -> None:
        if status not in STATUSES or status == "running":
            raise InputError(f"--status {status}: expected one of {', '.join(x for x in STATUSES if x != 'running')}")
        step = self.select(None, [step_id])[0]
        s = self.session
        with s.locked("stamp"):
            rec = s.state.step(step_id)
            old = rec.status
            rec.status, rec.stamped, rec.phase = status, True, step.phase
            rec.digest = step.digest
            if status == "succeeded":
                rec.finished_at = time.time()
            s.journal.append("stamped", step=step_id, old=old, new=status, user=os.environ.get("USER", "?"))
            s.save()

    def status(self) -> dict[str, Any]:
        steps = []
        for step in self.ordered():
            rec = self.state.steps.get(step.id)
            steps.append({
                "id": step.id, "phase": step.phase, "uses": step.spec.uses,
                "status": rec.status if rec else "pending", "attempts": rec.attempts if rec else 0,
                "started_at": rec.started_at if rec else None, "finished_at": rec.finished_at if rec else None,
                "error": rec.error if rec else None, "stamped": rec.stamped if rec else False,
            })
        return {
            "runbook": self.runbook.name, "runbook_path": str(self.runbook.path),
            "state_file": str(self.session.store.path),
            "runbook_changed": bool(self.state.runbook_digest and self.state.runbook_digest != self.runbook.digest),
            "lock": self.session.lock.describe_holder_liveness() if self.session.lock.is_held() else "free",
            "steps": steps,
        }


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
