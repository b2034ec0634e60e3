"""The step contract: what every step type offers the engine.

A step type is a class registered with `@step_type("domain.verb")`, with a pydantic `Params` model for
its `with:` block. The engine calls, in order: `check` (is the effect already there?), `apply` (make
it so, recording in `ctx.record(...)` what rollback needs), then `verify` (the health gate, retried
until the gate's deadline), and on request `rollback` (undo from the recorded facts).

Step modules must stay light at import time: import docker, kubernetes, paramiko, psycopg, hvac or
dns inside methods (or in adapters imported from methods), never at module level, so that
`migrate --help` and `migrate status` stay fast.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from migrator.runbook.base import StrictModel  # re-exported: step modules import it from here

if TYPE_CHECKING:
    from migrator.runbook.model import Runbook, RunbookFile


class Facts(BaseModel):
    """The shape of the facts one step records and another step reads back (`ctx.facts_as`), written
    down once, beside the step that records them. The state keeps them as plain JSON, as `record()`
    wrote them; keys the model does not name are kept (an earlier attempt may have recorded more)."""

    model_config = ConfigDict(extra="allow", frozen=True)


F = TypeVar("F", bound=Facts)


@dataclass(frozen=True)
class Check:
    """The answer of `check`: whether the step's effect is already in place, and why we think so."""

    done: bool
    reason: str = ""


@dataclass
class Plan:
    """What `apply` (or `rollback`) would change, and what it cannot predict without doing it."""

    changes: list[str] = field(default_factory=list)
    unknowns: list[str] = field(default_factory=list)
    waits: list[str] = field(default_factory=list)  # time-based preconditions, e.g. "TTL wait: 42 s left"

    def change(self, text: str) -> Plan:
        self.changes.append(text)
        return self


class Progress(Protocol):
    """A progress bar handle (rich on a terminal, silent elsewhere)."""

    def advance(self, amount: float = 1) -> None: ...

    def set_total(self, total: float | None) -> None: ...

    def set_description(self, text: str) -> None: ...


class StepContext(Protocol):
    """What the engine hands a step. Only this: steps never touch the state store directly."""

    step_id: str
    phase: int
    runbook: Runbook
    dry_run: bool
    log: Any  # a structlog BoundLogger bound to the step
    state_dir: Path  # this run's state directory (--state-dir): where a step keeps private files

    @property
    def facts(self) -> dict[str, Any]:
        """What this step recorded so far (from earlier attempts too, after a crash)."""

    def record(self, **facts: Any) -> None:
        """Merge facts into this step's record and persist the state atomically, now.

        Record what rollback needs BEFORE making the change it describes. Never record a secret value
        (the state writer masks known secrets anyway, as a safety net)."""

    def journal(self, event: str, **fields: Any) -> None:
        """Write an audit event to the journal (figures, decisions); never secret values."""

    def facts_of(self, step_id: str) -> dict[str, Any]:
        """Facts recorded by another step (e.g. dns-cutover reads what dns-lower-ttl recorded)."""

    def facts_as(self, model: type[F], step_id: str | None = None) -> F:
        """This step's facts (or another's, by id) read through their typed model (a `Facts`)."""

    def status_of(self, step_id: str) -> str: ...

    def finished_at(self, step_id: str) -> float | None:
        """Unix time at which another step last succeeded, or None."""

    def secret(self, name: str) -> str:
        """Resolve the runbook's secret `name` and register its value for redaction everywhere."""

    def failpoint(self, where: str) -> None:
        """A named point inside apply/rollback where MIGRATE_FAILPOINTS may crash or raise.

        The engine calls the four standard ones; steps call their own (e.g. 'after-table',
        'after-update'), which match `STEP:where=ACTION` or `STEP:where@N=ACTION` (N-th hit)."""

    def progress(self, description: str, total: float | None = None, unit: str = "") -> Progress: ...

    def child_recorder(self) -> Any:
        """A migrator.adapters.localproc.Recorder that records this step's child processes in its state
        record (persisted before they run) and forgets them once they ended."""

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        """A connection shared by every step of the run (SSH session, Docker client, kube client...),
        created on first use by `factory` and closed (if it has `close()`) when the run ends."""

    def remaining(self) -> float:
        """Seconds left before this step's timeout."""

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early with Interrupted on Ctrl-C."""

    def confirm(self, prompt: str) -> bool:
        """Ask the operator (approval gates). False when not interactive and not pre-approved."""

    def path(self, value: str) -> Path:
        """A path from the runbook, resolved relative to the runbook's directory."""


P = TypeVar("P", bound=StrictModel)


class Step(Generic[P]):
    """Base of every step type. Subclasses set `type_name` (via @step_type) and `Params`."""

    type_name: ClassVar[str] = ""
    Params: ClassVar[type[StrictModel]] = StrictModel
    # False: rollback is impossible by nature (e.g. decommission after deletion); the engine refuses
    # to roll it back and says so.
    reversible: ClassVar[bool] = True
    description: ClassVar[str] = ""
    # Params that end up in a process's argv: the loader refuses `${secrets.x}` in them.
    argv_fields: ClassVar[tuple[str, ...]] = ()
    # A parallel run (--parallel N) never runs two steps of the same group at once (e.g. "compose": the
    # VPS's dockerd stopping and starting containers for a freeze, a thaw, a decommission). None: any.
    exclusive: ClassVar[str | None] = None

    @classmethod
    def check_params(cls, params: Any, runbook: RunbookFile) -> list[tuple[str, str]]:
        """At load time: these (validated) params against the rest of the runbook, e.g. its environment,
        as (field of `with`, what is wrong) pairs; the loader reports each as a FILE:LINE error. Secret
        values are placeholders here. Default: nothing to check."""
        return []

    def __init__(self, ctx: StepContext, params: P) -> None:
        self.ctx = ctx
        self.params = params

    def check(self) -> Check:
        """Look at the world: is the effect already there? Default: not known, so apply."""
        return Check(False, "no check defined")

    def plan(self) -> Plan:
        raise NotImplementedError

    def apply(self) -> None:
        raise NotImplementedError

    def verify(self) -> None:
        """The health gate. Raise GateNotReady (retried until the deadline) or PermanentError."""

    def rollback(self) -> None:
        raise NotImplementedError

    def rollback_plan(self) -> Plan:
        return Plan(changes=[f"roll back {self.ctx.step_id} from its recorded facts"])

    def report(self) -> dict[str, Any]:
        """Figures for the rehearsal report (rows, bytes, durations...). Default: none."""
        return {}


class ReadOnlyStep(Step[P]):
    """A step that changes nothing (checks, verifications, validations): always 'in place', so apply and
    rollback are empty; its gate, `verify`, is the whole work."""

    in_place: ClassVar[str] = "it changes nothing; its gate is the test"

    def check(self) -> Check:
        return Check(True, self.in_place)

    def plan(self) -> Plan:
        return Plan()

    def apply(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def rollback_plan(self) -> Plan:
        return Plan(changes=["nothing: it changed nothing"])


_REGISTRY: dict[str, type[Step[Any]]] = {}


def step_type(name: str) -> Callable[[type[Step[Any]]], type[Step[Any]]]:
    """Class decorator that registers a step type under `name` (e.g. 'dns.cutover')."""

    def register(cls: type[Step[Any]]) -> type[Step[Any]]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"step type {name} registered twice")
        cls.type_name = name
        if "Params" not in cls.__dict__:
            cls.Params = _params_from_generic(cls)
        _REGISTRY[name] = cls
        return cls

    return register


def _params_from_generic(cls: type) -> type[StrictModel]:
    """`class X(Step[XParams])` declares its params model once, in the base."""
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            for arg in typing.get_args(base):
                if isinstance(arg, type) and issubclass(arg, StrictModel):
                    return arg
    raise RuntimeError(f"{cls.__name__}: declare its params as Step[ParamsModel] or set Params")


def registered() -> dict[str, type[Step[Any]]]:
    return _REGISTRY


def iter_types() -> Iterator[str]:
    yield from sorted(_REGISTRY)


def state_file(ctx: StepContext, *parts: str) -> Path:
    """A step's private file (a backup, a snapshot) under the run's state directory, wherever the
    runbook is. Steps record the path in their facts, so one written elsewhere by an older migrate is
    still found by its rollback."""
    return ctx.state_dir.joinpath(*parts)
