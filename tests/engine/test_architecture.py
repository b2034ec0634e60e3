"""The import contracts in pyproject.toml stay whole as modules are added (lint-imports checks the rest)."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import migrator.steps

REPO = Path(__file__).resolve().parents[2]


def contract(cid: str) -> dict[str, object]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["id"] == cid)


def test_the_engine_is_kept_from_every_step_module() -> None:
    modules = {f"migrator.steps.{m.name}" for m in pkgutil.iter_modules(migrator.steps.__path__)}
    expected = modules - {"migrator.steps.base"}
    listed = set(contract("step-contract")["forbidden_modules"])  # type: ignore[arg-type]
    assert listed == expected, (
        f"pyproject.toml [tool.importlinter] step-contract forbidden_modules: add {sorted(expected - listed)}, "
        f"remove {sorted(listed - expected)} (every module of migrator/steps except base; see docs/architecture.md)")
