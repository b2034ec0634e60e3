"""A context manager kept open for the rest of a run, as one of its shared resources."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any


class Held:
    """Entered once (an SSH tunnel, a port-forward); `.value` is what it yielded. The engine closes the
    run's resources at the end, which exits it."""

    def __init__(self, manager: AbstractContextManager[Any]) -> None:
        self._manager = manager
        self.value: Any = manager.__enter__()

    def close(self) -> None:
        self._manager.__exit__(None, None, None)
