"""Installable anywhere: the wheel built from a fresh copy of the repository, installed into a fresh venv,
then migrate used from a directory that has nothing to do with the checkout.

The wheel goes in with --no-deps; its dependencies come from the project's own venv, whose
site-packages a .pth file adds (a directory added that way has its own .pth files ignored, so the
checkout's editable install stays out: `migrator` is the wheel's alone). What this leaves to
scripts/setup.sh is pip resolving the dependency list, which every CI run does from scratch. One test,
every check in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.util import REPO

pytestmark = pytest.mark.slow


def sh(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_", "PYTHON"))}
    return subprocess.run(argv, cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def fresh_copy(dest: Path) -> Path:
    """What a clone holds: the tracked files (and new ones not ignored), as they are in the tree."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())
    return dest


def test_pip_install_into_a_fresh_venv_works_from_any_directory(tmp_path: Path) -> None:
    src = fresh_copy(tmp_path / "clone")
    venv = tmp_path / "venv"
    assert sh([sys.executable, "-m", "venv", str(venv)], tmp_path).returncode == 0
    wheel_dir = tmp_path / "wheel"
    built = sh([str(venv / "bin" / "pip"), "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(src)], tmp_path,
               timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheel_dir.glob("sevensa_migrator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "migrator/builtin/phases/1-cluster-setup.yaml" in names
    assert "migrator/builtin/runbooks/examples/local.yaml" in names
    assert "migrator/manifests/rentguy.yaml" in names
    installed = sh([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(wheel)], tmp_path, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).resolve().is_relative_to(REPO)]
    assert deps, sys.path
    (site / "project-dependencies.pth").write_text("\n".join(deps) + "\n")
    found = sh([str(venv / "bin" / "python"), "-c", "import migrator; print(migrator.__file__)"], tmp_path)
    assert found.stdout.strip().startswith(str(site)), found  # the wheel's package, not the checkout's

    work = tmp_path / "somewhere" / "else"
    work.mkdir(parents=True)
    migrate = str(venv / "bin" / "migrate")
    version = sh([migrate, "--version"], work)
    assert version.returncode == 0 and version.stdout.startswith("migrate 0."), version.stderr
    # no runbook here: one line saying what to do, exit 2 (not a traceback on runbooks/sandbox.yaml)
    missing = sh([migrate, "status"], work)
    assert missing.returncode == 2 and "file not found" in missing.stderr and "migrate init NAME" in missing.stderr
    assert "Traceback" not in missing.stderr
    # the sandbox's default folder is under this directory, never in site-packages
    sandbox = sh([migrate, "sandbox", "status", "--json"], work)
    assert sandbox.returncode == 0, sandbox.stderr
    assert json.loads(sandbox.stdout)["dir"] == str(work / "state" / "sandbox")
    # a runbook of one's own naming the shipped phases
    (work / "shop.yaml").write_text("name: shop\nphases: [builtin:phases/1-cluster-setup.yaml]\n"
                                    "environment:\n  target: {kubeconfig: kc, ingress_address: 127.0.0.1}\n")
    status = sh([migrate, "status", "--json", "-r", "shop.yaml"], work)
    assert status.returncode == 0, status.stderr
    assert [s["id"] for s in json.loads(status.stdout)["steps"]][:2] == ["storage-class", "namespaces"]
    # the shipped example: a template (running it in site-packages is refused), copied by init, then run
    env = {"EXAMPLE_API_TOKEN": "token-for-the-install-test"}
    refused = sh([migrate, "run", "-r", "builtin:runbooks/examples/local.yaml"], work, env)
    assert refused.returncode == 2 and "migrate init NAME --from builtin:runbooks/examples/local.yaml" in refused.stderr
    assert sh([migrate, "status", "-r", "builtin:runbooks/examples/local.yaml"], work).returncode == 0  # reading is fine
    assert sh([migrate, "init", "demo", "--from", "builtin:runbooks/examples/local.yaml"], work).returncode == 0
    ran = sh([migrate, "run", "-r", "demo.yaml", "--approve", "approve-build"], work, env)
    assert ran.returncode == 0, ran.stderr
    assert (work / "work" / "site" / "index.txt").is_file()
    assert (work / "state" / "demo.state.json").is_file()
    assert not list(site.rglob("work")) and not list(site.rglob("*.state.json"))  # nothing written there
