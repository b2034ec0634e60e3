from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.util import REPO

CANARY = "canary-Zq8v1-not-for-logs"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of the example runbook (its work dir lives next to it)."""
    dest = tmp_path / "example"
    shutil.copytree(REPO / "runbooks" / "examples", dest)
    return dest / "local.yaml"


@pytest.fixture
def env() -> dict[str, str]:
    return {"EXAMPLE_API_TOKEN": CANARY}
