"""Test helpers: write a one-off runbook in a temp dir and drive the engine or the CLI on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MIGRATE = [sys.executable, "-m", "migrator"]


class _NoAliases(yaml.SafeDumper):
    """Writes a value shared by two places out twice: the loader refuses YAML aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_NoAliases, sort_keys=False)


def write_runbook(
    directory: Path,
    phases: dict[int, list[dict[str, Any]]],
    *,
    name: str = "test",
    environment: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    vars: dict[str, Any] | None = None,
    coverage: dict[str, Any] | None = None,
    images: dict[str, Any] | None = None,
) -> Path:
    """Write runbook.yaml plus one phase file per phase; returns the runbook's path."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for number, steps in sorted(phases.items()):
        pf = directory / f"phase{number}.yaml"
        pf.write_text(_dump({"phase": number, "name": f"phase-{number}", "steps": steps}))
        files.append(pf.name)
    doc: dict[str, Any] = {"name": name, "phases": files}
    if vars:
        doc["vars"] = vars
    if secrets:
        doc["secrets"] = secrets
    if environment:
        doc["environment"] = environment
    if coverage:
        doc["coverage"] = coverage
    if images:
        doc["images"] = images
    path = directory / "runbook.yaml"
    path.write_text(_dump(doc))
    return path


def engine(runbook: Path, state_dir: Path | None = None, **options: Any) -> Any:
    """An Engine on `runbook` (state next to it unless given), output collected in .said."""
    from migrator.commands.common import load, new_engine
    from migrator.engine.engine import Options

    said: list[str] = []
    eng = new_engine(load(runbook), state_dir or runbook.parent / "state", Options(progress=False, **options),
                     say=said.append)
    eng.said = said  # type: ignore[attr-defined]
    return eng


def migrate(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (so crashes, exit codes and output are the real ones)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([*MIGRATE, *args], env=full_env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, input=input if input is not None else "")


def status_json(runbook: Path, state_dir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = migrate("status", "--json", "--runbook", str(runbook), "--state-dir", str(state_dir), env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]
