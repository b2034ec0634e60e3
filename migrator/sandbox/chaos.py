"""Chaos drills on the sandbox: crash `migrate` at a step and failpoint chosen from a seed, resume, and
compare the platform with the one an uninterrupted rehearsal produced.

Each drill first rolls the chosen step back with everything that depends on it (`--cascade`), so the
crash lands on real work; `migrate run` is then killed (SIGKILL, like a power cut) at the failpoint, and
`migrate resume` must finish the migration with the same end state. Used by tests/e2e and bench/chaos.py.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.engine.failpoints import STANDARD

from . import snapshot

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    seed: int
    step: str
    when: str
    crashed: bool = False
    resumed: bool = False
    differences: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return self.crashed and self.resumed and not self.differences

    def describe(self) -> str:
        tail = "\n".join(self.log[-6:])
        return (f"seed {self.seed}: crash at {self.step}:{self.when}: crashed={self.crashed} "
                f"resumed={self.resumed} differences={self.differences[:8]}\n{tail}")


def migrate(*args: str, env: dict[str, str] | None = None, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    # Only the failpoints given here: never ones inherited from the caller's environment.
    full = {k: v for k, v in os.environ.items() if k != "MIGRATE_FAILPOINTS"}
    full.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run([sys.executable, "-m", "migrator", *args], env=full, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def step_ids(runbook: Path) -> list[str]:
    from migrator.steps.catalogue import load_runbook

    return load_runbook(runbook, check_secrets=False).step_ids()


def choose(runbook: Path, seed: int) -> tuple[str, str]:
    rng = random.Random(seed)
    return rng.choice(step_ids(runbook)), rng.choice(STANDARD)


def run_once(runbook: Path, state_dir: Path, seed: int, reference: dict[str, Any]) -> Outcome:
    step, when = choose(runbook, seed)
    out = Outcome(seed, step, when)
    args = ["--runbook", str(runbook), "--state-dir", str(state_dir)]
    back = migrate("rollback", "--step", step, "--cascade", *args)
    out.log.append(f"rollback --step {step} --cascade: exit {back.returncode} {back.stderr.strip()[-300:]}")
    if back.returncode != 0:
        return out
    crash = migrate("run", "--approve", "go-no-go", *args, env={"MIGRATE_FAILPOINTS": f"{step}:{when}=crash"})
    out.crashed = crash.returncode == -9
    out.log.append(f"run with {step}:{when}=crash: exit {crash.returncode} {crash.stderr.strip()[-300:]}")
    # An internal error's stack goes to the log: a chaos failure is often a one-off, seen once in CI.
    resume = migrate("resume", "--approve", "go-no-go", *args, env={"MIGRATE_TRACEBACK": "1"})
    tail = 300 if resume.returncode == 0 else 4000
    out.log.append(f"resume: exit {resume.returncode} {resume.stderr.strip()[-tail:]}")
    status = migrate("status", "--json", *args)
    done = status.returncode == 0 and all(s["status"] == "succeeded" for s in json.loads(status.stdout)["steps"])
    out.resumed = resume.returncode == 0 and done
    out.differences = snapshot.differences(reference, snapshot.take())
    return out
