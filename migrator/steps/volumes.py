"""volume.copy: a Docker volume of the VPS into its target, as a tar stream, checked file by file.

The volume is mounted read-only in a short-lived helper container (image: one that already mounts the
volume, so it has tar, find and sha256sum; or `helper_image`). A sha256 manifest is made on the VPS; files
whose local copy already matches are skipped, so a crashed or cut-off copy resumes where it stopped. Each
file lands under a temporary name and is renamed only once its checksum matches the manifest.
The target is a host directory (`environment.target.volume_paths[target]`, the sandbox); copying into a
PVC through the pod exec stream (data_access=exec) is not implemented yet.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import Field

from migrator.errors import PermanentError, TemporaryError
from migrator.steps.base import Check, Plan, Step, StrictModel, step_type

if TYPE_CHECKING:
    from migrator.adapters.docker import DockerRemote

MOUNT = "/data"
TMP_SUFFIX = ".migrator-part"
MANIFEST_SCRIPT = (f"cd {MOUNT} && find . -type f -exec sha256sum {{}} + && echo --sizes-- && "
                   "find . -type f -exec stat -c '%s %n' {} + && echo --dirs-- && find . -type d -exec stat -c '%u %g %a %n' {} +")

# Names arrive on stdin, one a line (busybox tar has no -T): read them into "$@", then tar them.
TAR_SCRIPT = f'set --; while IFS= read -r f; do set -- "$@" "$f"; done; exec tar -C {MOUNT} -cf - -- "$@"'


class VolumeCopyParams(StrictModel):
    volume: str  # the Docker volume (or its name inside the compose project, e.g. wpcs-uploads)
    target: str  # the key in environment.target.volume_paths (the PVC name)
    project: str | None = None  # default: environment.source.compose_project
    helper_image: str | None = None  # default: the image of a container that mounts the volume
    batch_files: int = Field(default=200, ge=1)  # files per tar stream
    batch_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    failpoint_every: int = Field(default=1, ge=1)  # ctx.failpoint("after-file") every N files
    preserve_owner: bool = True  # when running as root


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _safe(name: str) -> str:
    """A manifest/tar path as a clean relative path; refuses anything that could leave the target."""
    p = PurePosixPath(name)
    parts = [x for x in p.parts if x not in (".", "")]
    if p.is_absolute() or ".." in parts or not parts:
        raise PermanentError(f"unsafe path in the volume: {name!r}")
    return "/".join(parts)


Dirs = dict[str, tuple[int, int, int]]  # relative path -> (uid, gid, mode)


def parse_manifest(text: str) -> tuple[dict[str, str], dict[str, int], Dirs]:
    """The helper's output -> ({path: sha256}, {path: size}, {dir: (uid, gid, mode)})."""
    sums: dict[str, str] = {}
    sizes: dict[str, int] = {}
    dirs: Dirs = {}
    section = "sums"
    for line in text.splitlines():
        if line in ("--sizes--", "--dirs--"):
            section = line.strip("-")
            continue
        if not line:
            continue
        if section == "sums":
            digest, _, name = line.partition("  ")
            if digest.startswith("\\"):
                raise PermanentError(f"file name with a newline or backslash in the volume: {name!r}; rename it")
            sums[_safe(name)] = digest
        elif section == "sizes":
            size, _, name = line.partition(" ")
            sizes[_safe(name)] = int(size)
        else:
            uid, gid, mode, name = line.split(" ", 3)
            dirs["." if name == "." else _safe(name)] = (int(uid), int(gid), int(mode, 8))
    return sums, sizes, dirs


@step_type("volume.copy")
class VolumeCopy(Step[VolumeCopyParams]):
    """Copy a Docker volume of the VPS into its target directory; resumable; sha256 checked on both sides."""

    _helper: str | None = None
    _copied_bytes = 0

    # -- where ---------------------------------------------------------------------------------------
    def _dest(self) -> Path:
        target = self.ctx.runbook.environment.target
        paths = target.volume_paths if target else {}
        if self.params.target in paths:
            return self.ctx.path(paths[self.params.target])
        access = target.data_access if target else "?"
        raise PermanentError(f"{self.ctx.step_id}: volume.copy into a PVC is not implemented for data_access={access} "
                             f"(no environment.target.volume_paths[{self.params.target!r}]); copy through the pod "
                             "exec stream is still to be written")

    def _docker(self) -> DockerRemote:
        from migrator.adapters.docker import remote_for

        return remote_for(self.ctx)

    def _volume(self, dr: DockerRemote) -> Any:
        from migrator.adapters.docker import NotFound

        source = self.ctx.runbook.environment.source
        project = self.params.project or (source.compose_project if source else None)
        for name in (self.params.volume, f"{project}_{self.params.volume}" if project else None):
            if name:
                try:
                    return dr.client.volumes.get(name)
                except NotFound:
                    continue
        raise PermanentError(f"{self.ctx.step_id}: no Docker volume {self.params.volume!r} on {dr.host} "
                             f"(nor {project}_{self.params.volume})")

    # -- the helper container --------------------------------------------------------------------------
    def _start_helper(self, dr: DockerRemote) -> str:
        from migrator.adapters.docker import NotFound

        volume = self._volume(dr)
        image = self.params.helper_image
        if image is None:
            users = dr.client.containers.list(all=True, filters={"volume": volume.name})
            if not users:
                raise PermanentError(f"{self.ctx.step_id}: no container mounts volume {volume.name}; give "
                                     "helper_image (an image with sh, tar, find, sha256sum)")
            image = users[0].image.id
        name = f"migrator-copy-{self.ctx.step_id}"
        try:
            dr.client.containers.get(name).remove(force=True)  # left by a crash
        except NotFound:
            pass
        helper = dr.client.containers.run(image, ["sleep", "86400"], entrypoint=[], name=name, detach=True,
                                          network_mode="none", labels={"migrator.helper": self.ctx.step_id},
                                          volumes={volume.name: {"bind": MOUNT, "mode": "ro"}}, user="0")
        self._helper = helper.id
        return str(helper.id)

    def _stop_helper(self, dr: DockerRemote) -> None:
        if self._helper:
            try:
                dr.client.containers.get(self._helper).remove(force=True)
            except Exception as exc:  # a leftover helper is harmless (removed on the next run)
                self.ctx.log.warning("helper not removed", error=str(exc))
            self._helper = None

    def _manifest(self, dr: DockerRemote, helper: str) -> tuple[dict[str, str], dict[str, int], Dirs]:
        rc, out, err = dr.exec_run(helper, ["sh", "-c", MANIFEST_SCRIPT])
        if rc != 0:
            raise PermanentError(f"{self.ctx.step_id}: manifest of the volume failed (exit {rc}): "
                                 f"{err.decode(errors='replace').strip()[-200:]}")
        return parse_manifest(out.decode(errors="surrogateescape"))

    # -- local side -------------------------------------------------------------------------------------
    def _todo(self, dest: Path, sums: dict[str, str]) -> list[str]:
        todo = []
        for name, digest in sorted(sums.items()):
            local = dest / name
            if not (local.is_file() and _sha256(local) == digest):
                todo.append(name)
        return todo

    def _local_manifest(self, dest: Path) -> dict[str, str]:
        out = {}
        for root, _, files in os.walk(dest):
            for f in files:
                p = Path(root) / f
                if not f.endswith(TMP_SUFFIX):
                    out[p.relative_to(dest).as_posix()] = _sha256(p)
        return out

    # -- the contract -----------------------------------------------------------------------------------
    def check(self) -> Check:
        dest = self._dest()
        if self.ctx.dry_run:  # the manifest needs a helper container: not in a dry run
            return Check(False, "not checked in a dry run (the manifest needs a helper container)")
        dr = self._docker()
        helper = self._start_helper(dr)
        try:
            sums, _, _ = self._manifest(dr, helper)
        finally:
            self._stop_helper(dr)
        todo = self._todo(dest, sums) if dest.exists() else list(sums)
        if todo:
            return Check(False, f"{len(todo)} of {len(sums)} files to copy")
        return Check(True, f"all {len(sums)} files in {dest} match the volume's checksums")

    def plan(self) -> Plan:
        dest = self._dest()
        return Plan(changes=[f"copy volume {self.params.volume} from the VPS into {dest} (tar over SSH, sha256 checked)"],
                    unknowns=["files written on the VPS while copying (freeze the writers first)"])

    def apply(self) -> None:
        dest = self._dest()
        if "target_existed" not in self.ctx.facts:  # before the first byte lands: what rollback restores
            self.ctx.record(target_existed=dest.exists(),
                            target_was_empty=not dest.exists() or not any(dest.iterdir()))
        dest.mkdir(parents=True, exist_ok=True)
        for leftover in dest.rglob(f"*{TMP_SUFFIX}"):
            leftover.unlink()
        dr = self._docker()
        helper = self._start_helper(dr)
        try:
            sums, sizes, dirs = self._manifest(dr, helper)
            for d in dirs:
                (dest / d).mkdir(parents=True, exist_ok=True)
            todo = self._todo(dest, sums)
            total = sum(sizes.get(n, 0) for n in sums)
            skipped = len(sums) - len(todo)
            self.ctx.record(files_total=len(sums), bytes_total=total, files_skipped_last=skipped)
            bar = self.ctx.progress(f"copy volume {self.params.volume}", total=total, unit="B")
            bar.advance(total - sum(sizes.get(n, 0) for n in todo))
            done = 0
            start = 0
            while start < len(todo):
                batch: list[str] = []
                size = 0
                while start < len(todo) and len(batch) < self.params.batch_files and size < self.params.batch_bytes:
                    batch.append(todo[start])
                    size += sizes.get(todo[start], 0)
                    start += 1
                for _name, nbytes in self._transfer(dr, helper, dest, batch, sums):
                    done += 1
                    self._copied_bytes += nbytes
                    bar.advance(nbytes)
                    if done % self.params.failpoint_every == 0:
                        self.ctx.record(files_done=skipped + done, bytes_copied=self._copied_bytes)
                        self.ctx.failpoint("after-file")
            self._dir_modes(dest, dirs)
            self.ctx.record(files_done=len(sums), bytes_copied=self._copied_bytes, finished_at=time.time())
        finally:
            self._stop_helper(dr)

    def _dir_modes(self, dest: Path, dirs: Dirs) -> None:
        """Directories get the volume's owner and mode last (a read-only dir would block the copy)."""
        for d, (uid, gid, mode) in sorted(dirs.items(), reverse=True):
            path = dest if d == "." else dest / d
            if os.geteuid() == 0 and self.params.preserve_owner:
                os.chown(path, uid, gid)
            os.chmod(path, mode)

    def _transfer(self, dr: DockerRemote, helper: str, dest: Path, names: list[str],
                  sums: dict[str, str]) -> Any:
        """Stream one batch as tar; yields (name, bytes) for each file written and checked."""
        from migrator.adapters.ssh import SSHException

        wanted = set(names)
        seen: set[str] = set()
        root = os.geteuid() == 0 and self.params.preserve_owner
        try:
            with dr.exec_stream(helper, ["sh", "-c", TAR_SCRIPT], stdin=True) as stream:
                stream.write("".join(f"./{n}\n" for n in names).encode())
                stream.close_stdin()
                with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                    for member in tar:
                        if not member.isreg():
                            continue
                        name = _safe(member.name)
                        if name not in wanted:
                            raise PermanentError(f"{self.ctx.step_id}: unexpected file in the tar stream: {name!r}")
                        src = tar.extractfile(member)
                        assert src is not None
                        final = dest / name
                        final.parent.mkdir(parents=True, exist_ok=True)
                        part = final.with_name(final.name + TMP_SUFFIX)
                        h = hashlib.sha256()
                        with part.open("wb") as out:
                            while chunk := src.read(1 << 20):
                                h.update(chunk)
                                out.write(chunk)
                            out.flush()
                            os.fsync(out.fileno())
                        if h.hexdigest() != sums[name]:
                            part.unlink()
                            raise TemporaryError(f"{name}: checksum differs from the manifest (changed while copying?)")
                        os.chmod(part, member.mode & 0o7777)
                        if root:
                            os.chown(part, member.uid, member.gid)
                        os.utime(part, (member.mtime, member.mtime))
                        os.replace(part, final)
                        seen.add(name)
                        yield name, member.size
                rc = stream.exit_code()
                if rc != 0:
                    raise PermanentError(f"{self.ctx.step_id}: tar in the helper exited {rc}: "
                                         f"{stream.stderr_tail().decode(errors='replace').strip()[-200:]}")
        except (tarfile.TarError, EOFError, OSError, SSHException) as exc:
            raise TemporaryError(f"{self.ctx.step_id}: transfer from {dr.host} cut off: "
                                 f"{exc.__class__.__name__}: {exc}") from None
        missing = wanted - seen
        if missing:
            raise TemporaryError(f"{self.ctx.step_id}: {len(missing)} file(s) missing from the tar stream "
                                 f"(e.g. {sorted(missing)[0]}): deleted while copying?")

    def verify(self) -> None:
        dest = self._dest()
        dr = self._docker()
        helper = self._start_helper(dr)
        try:
            sums, _, _ = self._manifest(dr, helper)
        finally:
            self._stop_helper(dr)
        local = self._local_manifest(dest)
        differ = sorted(n for n in sums if local.get(n) != sums[n])
        extra = sorted(set(local) - set(sums))
        if differ or extra:
            raise PermanentError(
                f"{self.ctx.step_id}: {dest} does not match volume {self.params.volume}: "
                + (f"{len(differ)} file(s) differ or are missing (e.g. {differ[0]})" if differ else "")
                + ("; " if differ and extra else "")
                + (f"{len(extra)} file(s) not in the volume (e.g. {extra[0]})" if extra else "")
                + "; run the step again to copy what changed")
        self.ctx.record(verified_files=len(sums), verified_at=time.time())

    def rollback(self) -> None:
        """The source was only read. The target is put back as it was when it held nothing before the copy;
        a target that already held files (a final sync over an earlier copy) is left as it is."""
        import shutil

        f, dest = self.ctx.facts, self._dest()
        if not f.get("target_was_empty") or not dest.exists():
            return
        if f.get("target_existed"):
            for child in dest.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        else:
            shutil.rmtree(dest)

    def rollback_plan(self) -> Plan:
        f, dest = self.ctx.facts, self._dest()
        if f.get("target_was_empty"):
            return Plan(changes=[f"empty {dest} again (it held nothing before the copy)"])
        return Plan(changes=[f"nothing: {dest} held files before the copy; the source was only read"])

    def report(self) -> dict[str, Any]:
        f = self.ctx.facts
        return {"files": f.get("files_total"), "bytes": f.get("bytes_total"), "bytes_copied": f.get("bytes_copied")}
