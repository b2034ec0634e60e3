"""`migrate --help` and `migrate status` must not import the heavy client libraries: the adapters declare
them through `adapters/lazy.py`, which imports a module when it is first used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrator.adapters.lazy import lazy
from tests.util import REPO

HEAVY = ("kubernetes", "docker", "paramiko", "psycopg", "hvac", "redis", "pymysql", "dns", "requests", "urllib3",
         "cryptography", "lexicon", "helm_python")


# Runs the CLI in-process, then writes down every module it imported (-X importtime misses the ones the
# catalogue imports through importlib).
PROBE = """
import atexit, json, pathlib, sys
out = pathlib.Path(sys.argv[1])
atexit.register(lambda: out.write_text(json.dumps(sorted(sys.modules))))
sys.argv = ["migrate", *sys.argv[2:]]
from migrator.entry import main
main()
"""


@pytest.mark.parametrize("argv", [["--help"], ["status", "-r", "runbooks/examples/local.yaml"],
                                  ["status", "-r", "runbooks/sevensa.yaml"]])  # sevensa: every step type
def test_no_heavy_imports(argv: list[str], tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    extra = ["--state-dir", str(tmp_path)] if argv[0] == "status" else []
    proc = subprocess.run([sys.executable, "-c", PROBE, str(out), *argv, *extra], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = set(json.loads(out.read_text()))
    assert "migrator.cli.main" in imported  # the measurement works
    if argv[0] == "status":
        assert "migrator.steps.openbao" in imported  # the step modules were loaded
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert heavy == [], heavy


def test_lazy_imports_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "lazy_probe_pkg"
    (pkg / "inner").mkdir(parents=True)
    (pkg / "__init__.py").write_text("VALUE = 1\n")
    (pkg / "inner" / "__init__.py").write_text("DEEP = 2\n")  # a submodule the package does not import
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("lazy_probe_pkg", "lazy_probe_pkg.inner"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    mod = lazy("lazy_probe_pkg")
    assert "lazy_probe_pkg" not in sys.modules
    assert mod.VALUE == 1
    assert "lazy_probe_pkg" in sys.modules
    assert mod.inner.DEEP == 2
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = mod.missing
