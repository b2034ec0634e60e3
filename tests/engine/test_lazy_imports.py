"""`migrate --help` and `migrate status` must not import the heavy client libraries."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.util import REPO

HEAVY = ("kubernetes", "docker", "paramiko", "psycopg", "hvac")


@pytest.mark.parametrize("argv", [["--help"], ["status", "-r", "runbooks/examples/local.yaml"]])
def test_no_heavy_imports(argv: list[str], tmp_path: os.PathLike[str]) -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "migrator", *argv, "--state-dir", str(tmp_path)]
                          if argv[0] == "status" else [sys.executable, "-X", "importtime", "-m", "migrator", *argv],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "migrator.cli" in imported  # the measurement works
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert heavy == [], heavy
