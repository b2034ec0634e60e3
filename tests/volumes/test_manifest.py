"""The volume manifest: the shell script (run here by sh with GNU tools; busybox in the helper containers of
tests/source) and the local scan describe the same tree the same way, and compare finds each difference."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from migrator.errors import PermanentError
from migrator.steps import volume_manifest as vm


def _tree(root: Path) -> None:
    (root / "a/b").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a/b/file.txt").write_text("hello\n")
    (root / "name with space|pipe").write_bytes(b"\x00\x01")
    (root / "zero").write_bytes(b"")
    os.link(root / "a/b/file.txt", root / "hard")
    os.symlink("a/b/file.txt", root / "rel-link")
    os.symlink("/nowhere/at/all", root / "dangling")
    os.symlink("a", root / "dir-link")
    os.chmod(root / "zero", 0o640)
    os.chmod(root / "a", 0o2750)


def _script_manifest(root: Path) -> vm.Manifest:
    out = subprocess.run(["sh", "-c", vm.script(str(root))], check=True, capture_output=True).stdout
    return vm.parse(out.decode(errors="surrogateescape"))


def test_script_and_scan_agree_on_every_entry(tmp_path: Path) -> None:
    _tree(tmp_path)
    by_script, by_scan = _script_manifest(tmp_path), vm.scan(tmp_path)
    assert set(by_script.entries) == set(by_scan.entries) == {
        ".", "a", "a/b", "a/b/file.txt", "empty", "name with space|pipe", "zero", "hard", "rel-link", "dangling",
        "dir-link"}
    assert vm.compare(by_script, by_scan) == []
    e = by_script.entries
    assert e["rel-link"].kind == "symlink" and e["rel-link"].link == "a/b/file.txt"
    assert e["dangling"].link == "/nowhere/at/all" and e["dir-link"].kind == "symlink"
    assert e["empty"].kind == "dir" and e["zero"].mode == 0o640 and e["a"].mode == 0o2750
    assert by_script.hardlink_groups() == [["a/b/file.txt", "hard"]]


def test_compare_names_each_kind_of_difference(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    _tree(src)
    shutil.copytree(src, dst, symlinks=True)  # hard links become two files
    (dst / "empty").rmdir()
    (dst / "rel-link").unlink()
    os.symlink("elsewhere", dst / "dangling.new")
    os.chmod(dst / "zero", 0o644)
    found = vm.compare(vm.scan(src), vm.scan(dst))
    assert "empty: dir missing on the target" in found
    assert "rel-link: symlink missing on the target (-> a/b/file.txt)" in found
    assert "dangling.new: not in the volume (symlink on the target)" in found
    assert "zero: mode 0640 in the volume, 0644 on the target" in found
    assert "hard links a/b/file.txt, hard: not one file on the target" in found


def test_special_files_are_listed_and_skip_leaves_them_out(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    os.mkfifo(src / "pipe")
    m = _script_manifest(src)
    assert [(e.path, e.kind) for e in m.specials()] == [("pipe", "fifo")]
    assert vm.compare(m, vm.scan(dst)) == ["pipe: fifo missing on the target"]
    assert vm.compare(m, vm.scan(dst), skip={"pipe"}) == []


def test_unsafe_paths_are_refused() -> None:
    with pytest.raises(PermanentError, match="unsafe path"):
        vm.parse("regular file|644|0|0|1|5|1|../etc/passwd\n--links--\n--sums--\n")
