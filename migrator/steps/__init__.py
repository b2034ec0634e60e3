"""Step types, one module per domain. `load_all()` imports every module here so they register."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from migrator.steps.base import Step, registered

_loaded = False


def load_all() -> dict[str, type[Step[Any]]]:
    """Import every step module (they stay light: adapters are imported inside methods)."""
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "base" and not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
    return registered()
