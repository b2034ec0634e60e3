"""Heavy client libraries, imported on first use: the one place the migrator defers an import.

Every step module is imported whenever a runbook is loaded (`migrate status`, `plan`, shell
completion of a runbook's step ids), and the client libraries behind the adapters cost more than all
the rest of the program (kubernetes, docker, paramiko, hvac, psycopg: ~0.7 s warm). So an adapter that
wraps one declares it at its top like this:

    if TYPE_CHECKING:
        import paramiko                     # mypy and import-linter see the real import
    else:
        paramiko = lazy("paramiko")         # imported when the adapter first touches paramiko.X

and the steps import the adapters at their top like any other module. Nothing else imports a module
inside a function to save time.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    """Stands in for module `name` until an attribute is read; then reads it from the real module
    (or, when the package does not import it itself, the submodule of that name: `dns.query`)."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)  # copy/pickle/inspect probing the stand-in: do not import for it
        module = importlib.import_module(self.__name__)
        try:
            return getattr(module, attr)
        except AttributeError:
            try:
                return importlib.import_module(f"{self.__name__}.{attr}")
            except ModuleNotFoundError:
                raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}") from None


def lazy(name: str) -> Any:
    """Module `name`, imported when first used (typed Any: declare the real import under TYPE_CHECKING)."""
    return LazyModule(name)
