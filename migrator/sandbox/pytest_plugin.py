"""pytest plugin: the session-scoped ``sandbox`` fixture.

Brings the sandbox up once per session (in ``$MIGRATE_SANDBOX_DIR`` or ``<repo>/state/sandbox``; an
already-up sandbox there is reused) and tears it down at the end unless ``MIGRATE_KEEP_SANDBOX=1``.
``MIGRATE_SANDBOX_SCALE`` sets the data scale (default 1). Tests marked ``sandbox_teardown`` run last.
Register with ``pytest_plugins = ["migrator.sandbox.pytest_plugin"]`` in tests/conftest.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .layout import default_dir
from .platform import SandboxInfo, down, up


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sandbox: needs the sandbox platform (dockerd, sshd, bao, named)")
    config.addinivalue_line("markers", "sandbox_teardown: tears the session sandbox down; runs last")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    last = [i for i in items if i.get_closest_marker("sandbox_teardown")]
    if last:
        items[:] = [i for i in items if not i.get_closest_marker("sandbox_teardown")] + last


def sandbox_dir() -> Path:
    return default_dir()


def _log(msg: str) -> None:
    sys.stderr.write(f"[sandbox] {msg}\n")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxInfo]:
    """The running sandbox (``SandboxInfo``); see ``SandboxInfo.to_dict()`` for how to reach each part."""
    d = sandbox_dir()
    scale = int(os.environ.get("MIGRATE_SANDBOX_SCALE", "1"))
    info = up(d, scale=scale, log=_log if os.environ.get("MIGRATE_SANDBOX_VERBOSE") else lambda _m: None)
    yield info
    if os.environ.get("MIGRATE_KEEP_SANDBOX") == "1":
        return
    down(d)
