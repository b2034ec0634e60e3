"""The state file: one JSON document per runbook, rewritten atomically after every transition.

A state file that cannot be read (truncated, corrupted, from an unknown version) is reported and never
overwritten: the operator decides what to do with it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from migrator import redact
from migrator.errors import InputError
from migrator.store.atomic import write_atomic

STATE_VERSION = 1


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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


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
            steps = {k: StepRecord.from_json(v) for k, v in data["steps"].items()}
        except TypeError as exc:
            raise InputError(f"{where}: steps: malformed step record ({exc}); left untouched") from None
        return State(
            runbook=runbook,
            runbook_path=data.get("runbook_path", runbook_path),
            runbook_digest=data.get("runbook_digest"),
            created_at=data.get("created_at", time.time()),
            updated_at=data.get("updated_at", time.time()),
            steps=steps,
            extra=data.get("extra", {}),
        )

    def save(self, state: State) -> None:
        state.updated_at = time.time()
        # Masking here is the last line of defence: steps must not record secrets in the first place.
        doc = redact.redact_obj(state.to_json())
        write_atomic(self.path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
