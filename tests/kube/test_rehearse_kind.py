"""`migrate rehearse --kind`: here kind cannot be installed, so it says so in one line and exits 2."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.util import migrate


def test_without_kind_one_line_and_exit_2(tmp_path: Path) -> None:
    # A PATH with python but neither kind nor docker.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    assert shutil.which("kind", path=path) is None
    proc = migrate("rehearse", "--kind", "x", env={"PATH": path}, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "kind" in lines[0] and "not installed" in lines[0]


def test_a_bad_cluster_name_is_refused(tmp_path: Path) -> None:
    proc = migrate("rehearse", "--kind", "Bad_Name", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--kind Bad_Name" in proc.stderr
