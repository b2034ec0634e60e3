"""The step catalogue: every step type by name, and loading a runbook against it.

This is how the rest of the program reaches the step types: the loader is given the catalogue (the
runbook layer never imports steps), resolves each step's class once, and the engine runs the class it
finds on the loaded step. `load_all()` imports every step module here so that they register.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import migrator.steps
from migrator.runbook import loader
from migrator.steps.base import Step, registered

if TYPE_CHECKING:
    from migrator.runbook.model import Runbook

_NOT_STEPS = {"base", "catalogue"}
_loaded = False


def load_all() -> dict[str, type[Step[Any]]]:
    """Import every step module (they stay light: adapters are imported inside methods)."""
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(migrator.steps.__path__):
            if info.name not in _NOT_STEPS and not info.name.startswith("_"):
                importlib.import_module(f"migrator.steps.{info.name}")
        _loaded = True
    return registered()


def load_runbook(path: Path, *, check_secrets: bool = True) -> Runbook:
    """Load and validate a runbook against every step type; raises InputError listing every problem."""
    return loader.load_runbook(path, load_all(), check_secrets=check_secrets)
