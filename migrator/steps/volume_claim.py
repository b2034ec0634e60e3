"""The PVC side of volume.copy: what the claim holds and how entries are made in it, all through the API.

A helper pod mounts the claim at /data (adapters/kube_volume.py creates and removes it). Everything the step
does to the claim is a pods/exec in that pod: the manifest (the same script as on the VPS, so both sides are
listed alike), the files (the VPS's tar stream unpacked by `tar -x -p`), the checksum of each batch as it
landed, and the entries a tar stream cannot set right on its own (directories that exist with another
mode, symlinks and hard links over something else, modes and owners deepest first, what has to go).
No byte is written through a host path: this is the path a real cluster takes.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from migrator.adapters import resources
from migrator.adapters.kube import KubeCluster, Ref
from migrator.adapters.kube_stream import exec_run
from migrator.adapters.kube_volume import MOUNT, start_helper, write_tar
from migrator.errors import PermanentError, TemporaryError
from migrator.steps import volume_manifest as vm

if TYPE_CHECKING:
    from migrator.steps.base import StepContext

# Names arrive on stdin, one a line (the manifest refuses names with a newline).
# Paths arrive on stdin NUL-terminated, each as ./PATH (never taken for an option), and go to one command
# per few thousand paths (xargs), not one process per path.
_XARGS = f"cd {MOUNT} && exec xargs -0 -r"


@dataclass(frozen=True)
class Claim:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"PersistentVolumeClaim {self.namespace}/{self.name}"


def helper_name(name: str, what: str = "claim") -> str:
    """A pod name (DNS-1123, 63 characters at most) for a helper."""
    name = re.sub(r"[^a-z0-9-]", "-", f"migrator-{what}-{name}".lower())[:63]
    return name.rstrip("-")


def helper_image(ctx: StepContext, override: str | None = None) -> str:
    target = ctx.runbook.environment.target
    return override or (target.helper_image if target else "busybox:1.36")


class _RunHelper:
    """The helper pod of one claim for the whole run: every step that reads or writes the claim (copy, final
    sync, backup, their checks and gates) execs in it, instead of waiting for a pod of its own each time.
    Removed when the run ends (the engine closes its resources); one left by a crash is replaced."""

    def __init__(self, cluster: KubeCluster, claim: Claim, image: str) -> None:
        self.cluster, self.claim, self.image = cluster, claim, image
        self.pod = helper_name(claim.name, "claim")
        self._started = False
        self._lock = threading.Lock()  # steps running at once share the pod: one start, never a replace

    def ensure(self) -> str:
        """The pod's name, once it runs (started again if it was deleted or ended under us)."""

        with self._lock:
            if self._started:
                pod = self.cluster.get(Ref("Pod", self.pod, self.claim.namespace)) or {}
                if (pod.get("status") or {}).get("phase") == "Running":
                    return self.pod
            start_helper(self.cluster, self.claim.namespace, self.claim.name, name=self.pod, image=self.image,
                         purpose="claim")
            self._started = True
            return self.pod

    def close(self) -> None:
        if not self._started:
            return
        try:
            self.cluster.delete(Ref("Pod", self.pod, self.claim.namespace))
        except Exception:  # noqa: BLE001  (a leftover helper is replaced by the next run)
            pass


@contextmanager
def helper(ctx: StepContext, claim: Claim, image: str | None = None) -> Iterator[tuple[KubeCluster, str]]:
    """(the run's cluster, the name of a running helper pod on the claim)."""
    cluster = resources.kube(ctx.resource, ctx.runbook)
    require_claim(cluster, claim)
    held: _RunHelper = ctx.resource(f"claim-helper:{claim.namespace}/{claim.name}",
                                    lambda: _RunHelper(cluster, claim, helper_image(ctx, image)))
    yield cluster, held.ensure()


def _run(cluster: KubeCluster, claim: Claim, pod: str, script: str, stdin: bytes | None = None,
         timeout: float = 3600.0) -> bytes:
    out = bytearray()
    res = exec_run(cluster, claim.namespace, pod, None, ["sh", "-c", script],
                   stdin=[stdin] if stdin is not None else None, stdout=out.extend, timeout=timeout)
    if res.code != 0:
        raise TemporaryError(f"in the helper pod of {claim} (exit {res.code}): "
                             f"{res.stderr.decode(errors='replace').strip()[-200:]}")
    return bytes(out)


def manifest(cluster: KubeCluster, claim: Claim, pod: str) -> vm.Manifest:
    return vm.parse(_run(cluster, claim, pod, vm.script(MOUNT)).decode(errors="surrogateescape"))


def _nul(names: Iterable[str]) -> bytes:
    return "".join(f"./{n}\0" for n in names).encode(errors="surrogateescape")


def _each(cluster: KubeCluster, claim: Claim, pod: str, command: str, paths: list[str]) -> None:
    """`command PATH...` over the paths (relative to the claim's root)."""
    if paths:
        _run(cluster, claim, pod, f"{_XARGS} {command}", _nul(paths))


def sums(cluster: KubeCluster, claim: Claim, pod: str, names: list[str]) -> dict[str, str]:
    """sha256 of the named files as they are in the claim (a missing file is absent from the result)."""
    out: dict[str, str] = {}
    if not names:
        return out
    exec_out = bytearray()
    exec_run(cluster, claim.namespace, pod, None, ["sh", "-c", f"{_XARGS} sha256sum"], stdin=[_nul(names)],
             stdout=exec_out.extend)  # a missing file makes sha256sum fail: that file is then absent
    for line in exec_out.decode(errors="surrogateescape").splitlines():
        digest, _, name = line.partition("  ")
        if name:
            out[vm.safe(name)] = digest
    return out


def unpack(cluster: KubeCluster, claim: Claim, pod: str, stream: Iterable[bytes]) -> int:
    """A tar stream into the claim, owners and modes kept; the bytes that went in."""
    return write_tar(cluster, claim.namespace, pod, stream).bytes_in


def remove(cluster: KubeCluster, claim: Claim, pod: str, paths: list[str]) -> None:
    if paths:
        _each(cluster, claim, pod, "rm -rf", paths)


def clear(cluster: KubeCluster, claim: Claim, pod: str) -> None:
    """Everything in the claim removed (the mount point itself stays)."""
    _run(cluster, claim, pod, f"find {MOUNT} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +")


def _misfits(src: vm.Manifest, dst: vm.Manifest, kinds: set[str]) -> list[str]:
    """Paths (of the given kinds in the volume) where the claim has something else: removed first."""
    out = []
    for path, e in src.entries.items():
        have = dst.entries.get(path)
        if path == "." or e.kind not in kinds or have is None:
            continue
        if have.kind != e.kind or (e.kind == "symlink" and have.link != e.link):
            out.append(path)
    return out


def _tar(members: list[tarfile.TarInfo]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for m in members:
            tar.addfile(m)
    return buf.getvalue()


def make_dirs(cluster: KubeCluster, claim: Claim, pod: str, src: vm.Manifest, dst: vm.Manifest) -> None:
    """Every directory of the volume (empty ones too), writable for the copy; what stands in its way goes."""
    remove(cluster, claim, pod, _misfits(src, dst, {"dir"}))
    members = []
    for path, e in sorted(src.entries.items()):
        if e.kind == "dir" and path != ".":
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o700 | e.mode, e.uid, e.gid
            members.append(info)
    if members:
        unpack(cluster, claim, pod, [_tar(members)])


def make_links(cluster: KubeCluster, claim: Claim, pod: str, src: vm.Manifest, dst: vm.Manifest) -> None:
    """Symlinks as links (never followed) and the other members of each hard-link group, linked to the
    file that was transferred."""
    wrong = _misfits(src, dst, {"symlink"})
    members = []
    for path, e in sorted(src.entries.items()):
        have = dst.entries.get(path)
        if e.kind == "symlink" and e.link is not None and (have is None or path in wrong):
            info = tarfile.TarInfo(path)
            info.type, info.linkname, info.uid, info.gid = tarfile.SYMTYPE, e.link, e.uid, e.gid
            members.append(info)
    for group in src.hardlink_groups():
        first = dst.entries.get(group[0])
        for other in group[1:]:
            have = dst.entries.get(other)
            if have is not None and first is not None and have.kind == "file" and have.inode == first.inode:
                continue
            if have is not None:
                wrong.append(other)
            info = tarfile.TarInfo(other)
            info.type, info.linkname = tarfile.LNKTYPE, group[0]
            members.append(info)
    remove(cluster, claim, pod, wrong)
    if members:
        unpack(cluster, claim, pod, [_tar(members)])


def prune(cluster: KubeCluster, claim: Claim, pod: str, src: vm.Manifest, dst: vm.Manifest, skip: set[str]) -> None:
    """Entries the volume does not have, deepest first."""
    extra = sorted((p for p in dst.entries if p != "." and p not in src.entries and p not in skip),
                   key=lambda p: -p.count("/"))
    remove(cluster, claim, pod, extra)


def set_metadata(cluster: KubeCluster, claim: Claim, pod: str, src: vm.Manifest, owners: bool) -> None:
    """Owners (when `owners`; symlinks' own, never their targets') and modes of every entry, one command per
    distinct owner and per distinct mode (a read-only directory does not stop root from changing what is
    under it)."""
    by_owner: dict[str, list[str]] = {}
    by_mode: dict[str, list[str]] = {}
    for path, e in sorted(src.entries.items()):
        if e.kind in vm.SPECIAL:
            continue
        by_owner.setdefault(f"{e.uid}:{e.gid}", []).append(path)
        if e.kind != "symlink":
            by_mode.setdefault(f"{e.mode:o}", []).append(path)
    if owners:
        for owner, paths in sorted(by_owner.items()):
            _each(cluster, claim, pod, f"chown -h {owner}", paths)
    for mode, paths in sorted(by_mode.items()):
        _each(cluster, claim, pod, f"chmod {mode}", paths)


def require_claim(cluster: KubeCluster, claim: Claim) -> None:
    if cluster.get(Ref("PersistentVolumeClaim", claim.name, claim.namespace)) is None:
        raise PermanentError(f"{claim} does not exist (it is created with its workload: is the deploy step done?)")


# -- backups of a claim ------------------------------------------------------------------------------------
RESTORE_DIR = ".migrator-restore"


def archive(cluster: KubeCluster, claim: Claim, pod: str, out: Path) -> dict[str, dict[str, object]]:
    """The claim as a tar (entries relative to its root; tar leaves sockets out, it cannot hold them) written
    to `out` (0600), and {path: {sha256, size}} of its regular files, listed in the pod before the tar."""
    listed = manifest(cluster, claim, pod)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:

        def sink(data: bytes) -> None:
            fh.write(data)

        res = exec_run(cluster, claim.namespace, pod, None,
                       ["sh", "-c", f"cd {MOUNT} && exec tar -c -f - ."],  # sockets: "ignored" by tar
                       stdout=sink)
    if res.code != 0:
        raise TemporaryError(f"tar of {claim} exited {res.code}: {res.stderr.decode(errors='replace').strip()[-200:]}")
    return {p: {"sha256": e.sha256, "size": e.size} for p, e in sorted(listed.files().items())
            if not p.startswith(RESTORE_DIR)}


def restore(cluster: KubeCluster, claim: Claim, pod: str, archive_path: Path, files: dict[str, dict[str, object]],
            label: str) -> int:
    """Unpack into a folder of the claim, check every file against `files`, then replace the claim's contents
    with it. Nothing of the claim is touched when a file does not match. Returns the number of files."""
    work = f"{MOUNT}/{RESTORE_DIR}"
    _run(cluster, claim, pod, f"rm -rf {work} && mkdir -m 0700 {work}")

    def chunks() -> Iterator[bytes]:
        with archive_path.open("rb") as fh:
            while data := fh.read(1 << 20):
                yield data

    res = exec_run(cluster, claim.namespace, pod, None, ["tar", "-x", "-p", "-f", "-", "-C", work], stdin=chunks())
    if res.code != 0:
        raise TemporaryError(f"{label}: tar -x in {claim} exited {res.code}: "
                             f"{res.stderr.decode(errors='replace').strip()[-200:]}")
    got = vm.parse(_run(cluster, claim, pod, vm.script(work)).decode(errors="surrogateescape")).files()
    bad = sorted(p for p, f in files.items() if p not in got or got[p].sha256 != f["sha256"])
    extra = sorted(set(got) - set(files))
    if bad or extra:
        _run(cluster, claim, pod, f"rm -rf {work}")
        shown = ", ".join((bad + extra)[:5])
        raise PermanentError(f"{label}: {len(bad)} file(s) that do not match the manifest, {len(extra)} not in it "
                             f"({shown}): refusing to restore this volume")
    _run(cluster, claim, pod,
         f"cd {MOUNT} && find . -mindepth 1 -maxdepth 1 ! -name {RESTORE_DIR} -exec rm -rf {{}} + && "
         f"cd {work} && find . -mindepth 1 -maxdepth 1 -exec mv {{}} {MOUNT}/ \\; && cd {MOUNT} && rmdir {work}")
    _symlink_owners(cluster, claim, pod, archive_path)
    return len(files)


def _symlink_owners(cluster: KubeCluster, claim: Claim, pod: str, archive_path: Path) -> None:
    """busybox's tar -x leaves a symlink owned by root: its owner is set again from the archive."""
    by_owner: dict[str, list[str]] = {}
    with tarfile.open(archive_path, "r") as tar:
        for m in tar:
            if m.issym() and (m.uid, m.gid) != (0, 0):
                by_owner.setdefault(f"{m.uid}:{m.gid}", []).append(vm.safe(m.name))
    for owner, paths in sorted(by_owner.items()):
        _each(cluster, claim, pod, f"chown -h {owner}", paths)


def files_of(cluster: KubeCluster, claim: Claim, pod: str) -> dict[str, vm.Entry]:
    return manifest(cluster, claim, pod).files()
