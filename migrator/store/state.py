"""The state file: one JSON document per runbook, rewritten atomically after every transition.

Every field is checked on read (`StateDoc`, strict: no coercion, no unknown keys). A state file that
cannot be trusted (truncated, corrupted, a field of the wrong type, a status the engine does not know,
from an unknown version) is refused, exit 2, and never overwritten: the operator decides what to do.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from migrator import redact
from migrator.errors import InputError
from migrator.store.atomic import write_atomic

STATE_VERSION = 1
STATUSES = ("pending", "running", "succeeded", "failed", "interrupted", "rolled_back", "skipped")
Status = Literal["pending", "running", "succeeded", "failed", "interrupted", "rolled_back", "skipped"]
Stage = Literal["check", "apply", "verify", "rollback"]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ProcessDoc(_Strict):
    """A process a step started: local (pid, process group, start time) or remote (found by its marker)."""

    kind: Literal["local", "remote"]
    what: str
    started_at: float
    pid: int | None = Field(default=None, ge=1)
    pgid: int | None = Field(default=None, ge=1)
    start_ticks: int | None = Field(default=None, ge=0)
    host: str = ""
    boot: str = ""
    marker: str | None = None  # remote: the value of MIGRATOR_PROC in its environment
    via: str | None = None  # remote: which resource reaches it (e.g. "ssh:source")
    container: str | None = None  # remote through docker exec: the container it runs in
    user: str | None = None  # remote through docker exec: as whom (the search runs as the same user)


class StepDoc(_Strict):
    status: Status = "pending"
    phase: int = Field(default=0, ge=0)
    attempts: int = Field(default=0, ge=0)
    started_at: float | None = None
    finished_at: float | None = None
    digest: str | None = None
    facts: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    stage: Stage | None = None
    rolled_back_at: float | None = None
    stamped: bool = False
    report: dict[str, Any] = Field(default_factory=dict)
    processes: list[ProcessDoc] = Field(default_factory=list)


class LastRun(_Strict):
    phases: list[int] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)


class ExtraDoc(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")  # e.g. the source inventory of `migrate inspect`

    last_run: LastRun | None = None


class StateDoc(_Strict):
    version: Literal[1]
    runbook: str
    runbook_path: str
    runbook_digest: str | None = None
    created_at: float
    updated_at: float
    steps: dict[str, StepDoc]
    extra: ExtraDoc = Field(default_factory=ExtraDoc)


@dataclass
class StepRecord:
    status: str = "pending"
    phase: int = 0
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    digest: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    stage: str | None = None  # where inside the step it was: check, apply, verify, rollback
    rolled_back_at: float | None = None
    stamped: bool = False
    report: dict[str, Any] = field(default_factory=dict)  # figures for the rehearsal report
    # Child processes of the step (see migrator.store.procs), recorded before they run, so that a resume
    # after a crash finds one still running and waits for it or stops it instead of running beside it.
    processes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_doc(cls, doc: StepDoc) -> StepRecord:
        data = doc.model_dump()
        data["processes"] = [p.model_dump(exclude_none=True) for p in doc.processes]
        return cls(**data)


@dataclass
class State:
    runbook: str
    runbook_path: str
    runbook_digest: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the source inventory of `migrate inspect`

    def step(self, step_id: str) -> StepRecord:
        if step_id not in self.steps:
            self.steps[step_id] = StepRecord()
        return self.steps[step_id]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "runbook": self.runbook,
            "runbook_path": self.runbook_path,
            "runbook_digest": self.runbook_digest,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "steps": {k: asdict(v) for k, v in self.steps.items()},
            "extra": self.extra,
        }


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def load(self, runbook: str, runbook_path: str) -> State:
        if not self.path.exists():
            return State(runbook=runbook, runbook_path=runbook_path)
        raw = self.path.read_bytes()
        where = f"{self.path}"
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            kind = "truncated" if isinstance(exc, json.JSONDecodeError) and exc.pos >= len(raw) - 1 else "corrupted"
            raise InputError(
                f"{where}: state file is {kind} ({exc.__class__.__name__} at byte "
                f"{getattr(exc, 'pos', getattr(exc, 'start', '?'))}); it was left untouched: restore it from "
                f"the journal or a backup, or move it away to start over"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("steps"), dict):
            raise InputError(f"{where}: steps: state file is not a migrator state (expected an object with 'steps'); left untouched")
        if data.get("version") != STATE_VERSION:
            raise InputError(f"{where}: version: expected {STATE_VERSION}, found {data.get('version')!r}; left untouched")
        if data.get("runbook") != runbook:
            raise InputError(f"{where}: runbook: this state belongs to runbook {data.get('runbook')!r}, not {runbook!r}")
        try:
            doc = StateDoc.model_validate(data)
        except ValidationError as exc:
            problems = [f"{where}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']} "
                        f"(found {_short(err.get('input'))}); the state file was left untouched"
                        for err in exc.errors()[:20]]
            raise InputError(problems[0], problems) from None
        extra = doc.extra.model_dump()
        if extra.get("last_run") is None:
            extra.pop("last_run", None)
        return State(
            runbook=runbook,
            runbook_path=doc.runbook_path,
            runbook_digest=doc.runbook_digest,
            created_at=doc.created_at,
            updated_at=doc.updated_at,
            steps={k: StepRecord.from_doc(v) for k, v in doc.steps.items()},
            extra=extra,
        )

    def save(self, state: State) -> None:
        state.updated_at = time.time()
        # Masking here is the last line of defence: steps must not record secrets in the first place.
        doc = redact.redact_obj(state.to_json())
        write_atomic(self.path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
