"""volume.copy: a Docker volume of the VPS into its target, every entry of it, checked entry by entry.

The volume is mounted read-only in a short-lived helper container (image: one that already mounts the
volume, so it has tar, find, stat and sha256sum; or `helper_image`). Its manifest (volume_manifest: every
entry with its type, mode, owner, sha256 of files, symlink targets, hard-link groups, extended
attributes when the helper has getfattr) is made on the VPS. Regular files travel as a tar stream, one
file per hard-link group; files whose local copy already matches are skipped, so a crashed or cut-off
copy resumes where it stopped. Each file lands under a temporary name and is renamed only once its
checksum matches the manifest. Directories (empty ones too), symlinks (as links, never followed), the
other members of hard-link groups, modes, owners and extended attributes are made from the manifest.
Special files (sockets, fifos, devices) fail the step unless the runbook names them in `skip_special`.
The target is a PersistentVolumeClaim (`target` in `namespace`), written only through the API: a helper
pod mounts it, the VPS's tar stream is unpacked there over pods/exec, each batch is checksummed in the pod,
and the manifest of the claim is made there by the same script (steps/volume_claim.py). A host directory
that `environment.target.volume_paths[target]` names stands in for the claim (the benchmarks and unit
tests); the bytes then land on this machine's disk.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from migrator.adapters import resources
from migrator.adapters.docker import remote_for
from migrator.adapters.kube import Ref
from migrator.errors import PermanentError, TemporaryError
from migrator.steps import volume_claim as vc
from migrator.steps import volume_manifest as vm
from migrator.steps.base import Check, Plan, Progress, Step, StrictModel, step_type

if TYPE_CHECKING:
    from migrator.adapters.docker import DockerRemote
    from migrator.adapters.kube import KubeCluster

MOUNT = "/data"
TMP_SUFFIX = vm.TMP_SUFFIX

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
    # Special files (sockets, fifos, devices) cannot be copied: the step fails on them unless they are
    # named here (paths inside the volume), which leaves them out on purpose.
    skip_special: list[str] = Field(default_factory=list)
    namespace: str | None = None  # the claim's namespace (the target is a PVC unless volume_paths names it)
    claim_helper_image: str | None = None  # the helper pod on the claim; default environment.target.helper_image
    # Extended attributes the volume's files carry cannot be set in a PVC from the helper pod: the copy
    # refuses before writing, unless the runbook leaves them behind on purpose.
    skip_xattrs: bool = False


def _drop_stray_xattrs(local: Path, wanted: dict[str, bytes]) -> None:
    """user.* attributes the volume's entry does not have (left by an earlier copy) removed; other
    namespaces (security.*, system.*) belong to the target's system and are left alone."""
    try:
        names = os.listxattr(local, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith("user.") and name not in wanted:
            os.removexattr(local, name, follow_symlinks=False)


def _remove(path: Path) -> None:
    """Whatever is at `path` (a link is removed, never what it points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


@step_type("volume.copy")
class VolumeCopy(Step[VolumeCopyParams]):
    """Copy a Docker volume of the VPS into its target directory; resumable; sha256 checked on both sides."""

    _helper: str | None = None
    _copied_bytes = 0
    _progress_at = 0.0
    PROGRESS_EVERY_S = 1.0

    def _progress(self, files_done: int) -> None:
        """files_done/bytes_copied in the state, at most once a second (each record rewrites the whole state
        file: once per file made a 300-file copy spend most of its time there). Only a figure for status:
        a resume finds what landed from the target's checksums, never from these."""
        now = time.monotonic()
        if now - self._progress_at >= self.PROGRESS_EVERY_S:
            self._progress_at = now
            self.ctx.record(files_done=files_done, bytes_copied=self._copied_bytes)

    # -- where ---------------------------------------------------------------------------------------
    def _dest(self) -> Path | vc.Claim:
        target = self.ctx.runbook.environment.target
        if target is None:
            raise PermanentError(f"{self.ctx.step_id}: volume.copy needs environment.target")
        if self.params.target in target.volume_paths:
            return self.ctx.path(target.volume_paths[self.params.target])
        if not self.params.namespace:
            raise PermanentError(f"{self.ctx.step_id}: with.namespace is needed: the target {self.params.target!r} is "
                                 f"a PersistentVolumeClaim (data_access: {target.data_access})")
        return vc.Claim(self.params.namespace, self.params.target)

    def _cluster(self) -> KubeCluster:
        return resources.kube(self.ctx.resource, self.ctx.runbook)

    @contextmanager
    def _claim_pod(self, claim: vc.Claim) -> Iterator[str]:
        """The helper pod on the claim, for one action (replaced when a crash left one)."""
        with vc.helper(self.ctx, claim, self.params.claim_helper_image) as (_, pod):
            yield pod

    def _claim_image(self) -> str:
        return vc.helper_image(self.ctx, self.params.claim_helper_image)

    def _target_manifest(self, dest: Path | vc.Claim) -> vm.Manifest:
        if isinstance(dest, vc.Claim):
            with self._claim_pod(dest) as pod:
                return vc.manifest(self._cluster(), dest, pod)
        return vm.scan(dest)

    def _docker(self) -> DockerRemote:
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

    def _manifest(self, dr: DockerRemote, helper: str) -> vm.Manifest:
        rc, out, err = dr.exec_run(helper, ["sh", "-c", vm.script(MOUNT)])
        if rc != 0:
            raise PermanentError(f"{self.ctx.step_id}: manifest of the volume failed (exit {rc}): "
                                 f"{err.decode(errors='replace').strip()[-200:]}")
        return vm.parse(out.decode(errors="surrogateescape"))

    def _source_manifest(self) -> vm.Manifest:
        dr = self._docker()
        helper = self._start_helper(dr)
        try:
            return self._manifest(dr, helper)
        finally:
            self._stop_helper(dr)

    def _owners(self) -> bool:
        return os.geteuid() == 0 and self.params.preserve_owner

    def _differences(self, src: vm.Manifest, dest: Path | vc.Claim) -> list[str]:
        local = self._target_manifest(dest)
        if self.ctx.facts.get("xattrs_unsupported") or isinstance(dest, vc.Claim):
            local.xattrs_read = False  # the target cannot hold them: not compared (reported by apply)
        owners = self._owners_in_claim() if isinstance(dest, vc.Claim) else self._owners()
        return vm.compare(src, local, set(self.params.skip_special), owners=owners)

    def _refuse_specials(self, src: vm.Manifest) -> list[vm.Entry]:
        """Special files named in skip_special (left out); any other fails the step."""
        named = set(self.params.skip_special)
        specials = src.specials()
        unnamed = [e for e in specials if e.path not in named]
        if unnamed:
            raise PermanentError(
                f"{self.ctx.step_id}: volume {self.params.volume} holds {len(unnamed)} special file(s) that cannot "
                "be copied: " + ", ".join(f"{e.path} ({e.kind})" for e in unnamed[:10])
                + "; name them in with.skip_special to leave them out on purpose")
        return specials

    # -- local side -------------------------------------------------------------------------------------
    def _todo(self, dest: Path, src: vm.Manifest) -> list[str]:
        """Files to transfer: one per hard-link group, those whose local copy is not already right."""
        followers = {p for g in src.hardlink_groups() for p in g[1:]}
        todo = []
        for name, e in sorted(src.files().items()):
            local = dest / name
            if name in followers:
                continue
            if not (local.is_file() and not local.is_symlink() and vm.sha256_of(local) == e.sha256):
                todo.append(name)
        return todo

    def _inside(self, dest: Path, path: Path) -> None:
        """No write may go through a symlink out of the target (a link left by an earlier copy where the
        volume now has a directory)."""
        real = os.path.realpath(path.parent)
        root = os.path.realpath(dest)
        if real != root and not real.startswith(root + os.sep):
            raise PermanentError(f"{self.ctx.step_id}: {path} would be written through a symlink out of {dest}")

    # -- the contract -----------------------------------------------------------------------------------
    def check(self) -> Check:
        dest = self._dest()
        if self.ctx.dry_run:  # the manifest needs a helper container: not in a dry run
            return Check(False, "not checked in a dry run (the manifest needs a helper container)")
        src = self._source_manifest()
        if isinstance(dest, Path) and not dest.exists():
            return Check(False, f"{len(src.entries)} entries to copy")
        differ = self._differences(src, dest)
        if differ:
            return Check(False, f"{len(differ)} of {len(src.entries)} entries to copy or fix (e.g. {differ[0]})")
        return Check(True, f"all {len(src.entries)} entries in {dest} match the volume's manifest")

    def plan(self) -> Plan:
        dest = self._dest()
        if isinstance(dest, vc.Claim):
            how = (f"through a helper pod ({self._claim_image()}) that mounts it, over pods/exec: files "
                   "(tar over SSH, sha256 checked in the pod), directories, symlinks as links, hard links, modes, "
                   "owners; extended attributes are not copied into a PVC")
        else:
            how = ("files (tar over SSH, sha256 checked), directories, symlinks as links, hard links, modes, owners, "
                   "extended attributes when the helper image can read them")
        plan = Plan(changes=[f"copy volume {self.params.volume} from the VPS into {dest}: {how}"],
                    unknowns=["files written on the VPS while copying (freeze the writers first)"])
        if self.params.skip_special:
            plan.change(f"leave out special files named in skip_special: {', '.join(self.params.skip_special)}")
        specials = self._peek_specials()
        if specials is None:
            plan.unknowns.append("special files (sockets, fifos, devices) in the volume: listed when the step runs "
                                 "(no running container mounts it to look now); unnamed ones fail the step")
        else:
            unnamed = [s for s in specials if s.split(" ")[0] not in set(self.params.skip_special)]
            if unnamed:
                plan.change(f"FAILS: special file(s) not named in skip_special: {', '.join(unnamed)}")
        return plan

    def _peek_specials(self) -> list[str] | None:
        """Special files seen read-only through a running container that mounts the volume (no helper
        container is started for a plan); None when there is none to look through."""
        try:
            dr = self._docker()
            volume = self._volume(dr)
            for c in dr.client.containers.list(filters={"volume": volume.name}):
                mount = next((m.get("Destination") for m in c.attrs.get("Mounts", [])
                              if m.get("Name") == volume.name), None)
                if not mount:
                    continue
                rc, out, _ = dr.exec_run(c.id, ["sh", "-c", f"cd '{mount}' && find . ! -type f ! -type d ! -type l "
                                                            "-exec stat -c '%F|%n' {} +"])
                if rc != 0:
                    return None
                return [f"{vm.safe(line.split('|', 1)[1])} ({vm.KINDS.get(line.split('|', 1)[0], '?')})"
                        for line in out.decode(errors="replace").splitlines() if "|" in line]
        except PermanentError:
            return None
        return None

    def apply(self) -> None:
        dest = self._dest()
        if isinstance(dest, vc.Claim):
            self._apply_claim(dest)
        else:
            self._apply_dir(dest)

    def _batches(self, todo: list[str], files: dict[str, vm.Entry]) -> Iterator[list[str]]:
        start = 0
        while start < len(todo):
            batch: list[str] = []
            size = 0
            while start < len(todo) and len(batch) < self.params.batch_files and size < self.params.batch_bytes:
                batch.append(todo[start])
                size += files[todo[start]].size
                start += 1
            yield batch

    def _start(self, src: vm.Manifest, files: dict[str, vm.Entry], todo: list[str],
               specials: list[vm.Entry]) -> tuple[Progress, int]:
        """What the copy will do, recorded; the progress bar, advanced past the files already in place."""
        total = sum(e.size for e in files.values())
        skipped = len(files) - len(todo)
        self.ctx.record(files_total=len(files), bytes_total=total, files_skipped_last=skipped,
                        entries_total=len(src.entries), specials_skipped=[e.path for e in specials])
        bar = self.ctx.progress(f"copy volume {self.params.volume}", total=total, unit="B")
        bar.advance(total - sum(files[n].size for n in todo))
        return bar, skipped

    def _apply_claim(self, claim: vc.Claim) -> None:
        """The copy into a PVC: every write is a pods/exec in the helper pod on the claim."""
        cluster = self._cluster()
        dr = self._docker()
        helper = self._start_helper(dr)
        try:
            with self._claim_pod(claim) as pod:
                have = vc.manifest(cluster, claim, pod)
                if "target_existed" not in self.ctx.facts:  # before the first byte lands: what rollback restores
                    self.ctx.record(target_existed=True, target_was_empty=set(have.entries) <= {"."})
                src = self._manifest(dr, helper)
                specials = self._refuse_specials(src)
                self._refuse_xattrs(src, claim)
                vc.make_dirs(cluster, claim, pod, src, have)
                files = src.files()
                followers = {p for g in src.hardlink_groups() for p in g[1:]}
                todo = [n for n, e in sorted(files.items()) if n not in followers
                        and not (have.entries.get(n) and have.entries[n].kind == "file"
                                 and have.entries[n].sha256 == e.sha256)]
                bar, skipped = self._start(src, files, todo, specials)
                done = 0
                for batch in self._batches(todo, files):
                    self._transfer_to_claim(dr, helper, cluster, claim, pod, batch)
                    landed = vc.sums(cluster, claim, pod, batch)
                    for name in batch:  # each file checked where it landed, as on a host directory
                        if landed.get(name) != files[name].sha256:
                            raise TemporaryError(f"{self.ctx.step_id}: {name} in {claim} does not match the "
                                                 "volume's manifest (changed while copying?)")
                        done += 1
                        self._copied_bytes += files[name].size
                        bar.advance(files[name].size)
                        if done % self.params.failpoint_every == 0:
                            self._progress(skipped + done)
                            self.ctx.failpoint("after-file")
                have = vc.manifest(cluster, claim, pod)
                vc.make_links(cluster, claim, pod, src, have)
                self.ctx.failpoint("after-links")
                if self.ctx.facts.get("target_was_empty"):
                    vc.prune(cluster, claim, pod, src, have, set(self.params.skip_special))
                vc.set_metadata(cluster, claim, pod, src, self._owners_in_claim())
                unsupported = sorted({n for x in src.xattrs.values() for n in x})
                if unsupported:  # left behind on purpose (skip_xattrs: _refuse_xattrs let them through)
                    self.ctx.log.warning("extended attributes left behind (skip_xattrs)", names=unsupported)
                self.ctx.record(files_done=len(files), bytes_copied=self._copied_bytes, finished_at=time.time(),
                                xattrs_read=src.xattrs_read, xattrs_unsupported=unsupported)
        finally:
            self._stop_helper(dr)

    def _refuse_xattrs(self, src: vm.Manifest, claim: vc.Claim) -> None:
        """A volume whose files carry extended attributes is not copied into a claim without them unless the
        runbook says so: refused before the first write, naming the entries and the attributes."""
        carrying = sorted(p for p, x in src.xattrs.items() if x)
        if not carrying or self.params.skip_xattrs:
            return
        names = sorted({n for p in carrying for n in src.xattrs[p]})
        raise PermanentError(
            f"{self.ctx.step_id}: {len(carrying)} entr{'y' if len(carrying) == 1 else 'ies'} of volume "
            f"{self.params.volume} carry extended attributes ({', '.join(names)}; e.g. {', '.join(carrying[:3])}), "
            f"which the copy into PVC {claim.namespace}/{claim.name} cannot set; nothing was written. "
            "Set `skip_xattrs: true` to leave them behind, or copy into a host directory (volume_paths)")

    def _cluster_has(self, claim: vc.Claim) -> bool:
        return self._cluster().get(Ref("PersistentVolumeClaim", claim.name, claim.namespace)) is not None

    def _owners_in_claim(self) -> bool:
        return self.params.preserve_owner  # the helper pod runs as root: owners can always be set

    def _transfer_to_claim(self, dr: DockerRemote, helper: str, cluster: KubeCluster, claim: vc.Claim, pod: str,
                           names: list[str]) -> None:
        """One batch: the VPS helper's tar stream, relayed chunk by chunk into `tar -x` in the pod."""
        from migrator.adapters.ssh import SSHException

        try:
            with dr.exec_stream(helper, ["sh", "-c", TAR_SCRIPT], stdin=True) as stream:
                stream.write("".join(f"./{n}\n" for n in names).encode())
                stream.close_stdin()

                def chunks() -> Iterator[bytes]:
                    while data := stream.read(1 << 20):
                        yield data

                vc.unpack(cluster, claim, pod, chunks())
                rc = stream.exit_code()
                if rc != 0:
                    raise PermanentError(f"{self.ctx.step_id}: tar in the helper exited {rc}: "
                                         f"{stream.stderr_tail().decode(errors='replace').strip()[-200:]}")
        except (OSError, SSHException) as exc:
            raise TemporaryError(f"{self.ctx.step_id}: transfer from {dr.host} into {claim} cut off: "
                                 f"{exc.__class__.__name__}: {exc}") from None

    def _apply_dir(self, dest: Path) -> None:
        if "target_existed" not in self.ctx.facts:  # before the first byte lands: what rollback restores
            self.ctx.record(target_existed=dest.exists(),
                            target_was_empty=not dest.exists() or not any(dest.iterdir()))
        dest.mkdir(parents=True, exist_ok=True)
        for leftover in dest.rglob(f"*{TMP_SUFFIX}"):
            leftover.unlink()
        dr = self._docker()
        helper = self._start_helper(dr)
        try:
            src = self._manifest(dr, helper)
            specials = self._refuse_specials(src)
            self._make_dirs(dest, src)
            files = src.files()
            todo = self._todo(dest, src)
            bar, skipped = self._start(src, files, todo, specials)
            done = 0
            for batch in self._batches(todo, files):
                for _name, nbytes in self._transfer(dr, helper, dest, batch, {n: files[n].sha256 or "" for n in batch}):
                    done += 1
                    self._copied_bytes += nbytes
                    bar.advance(nbytes)
                    if done % self.params.failpoint_every == 0:
                        self._progress(skipped + done)
                        self.ctx.failpoint("after-file")
            self._links(dest, src)
            self.ctx.failpoint("after-links")
            self._prune(dest, src)
            self._metadata(dest, src)
            self.ctx.record(files_done=len(files), bytes_copied=self._copied_bytes, finished_at=time.time())
        finally:
            self._stop_helper(dr)

    def _make_dirs(self, dest: Path, src: vm.Manifest) -> None:
        """Every directory, empty ones too; whatever stands where the volume has a directory is replaced."""
        for path, e in sorted(src.entries.items()):
            if e.kind != "dir" or path == ".":
                continue
            local = dest / path
            self._inside(dest, local)
            if local.is_symlink() or (local.exists() and not local.is_dir()):
                _remove(local)
            local.mkdir(exist_ok=True)
            os.chmod(local, 0o700 | e.mode)  # writable for the copy; the volume's mode comes last

    def _links(self, dest: Path, src: vm.Manifest) -> None:
        """Hard-link groups' other members linked to the file transferred; symlinks made as links."""
        for group in src.hardlink_groups():
            first = dest / group[0]
            for other in group[1:]:
                local = dest / other
                self._inside(dest, local)
                if local.exists() and not local.is_symlink() and os.path.samefile(first, local):
                    continue
                _remove(local)
                os.link(first, local)
        for path, e in sorted(src.entries.items()):
            if e.kind != "symlink" or e.link is None:
                continue
            local = dest / path
            self._inside(dest, local)
            if local.is_symlink() and os.readlink(local) == e.link:
                continue
            _remove(local)
            os.symlink(e.link, local)

    def _prune(self, dest: Path, src: vm.Manifest) -> None:
        """Entries not in the volume, removed when the target held nothing before this copy (they are then
        what an earlier attempt copied from a volume that has changed since)."""
        if not self.ctx.facts.get("target_was_empty"):
            return
        skip = set(self.params.skip_special)
        extra = sorted((p for p in vm.scan(dest, digests=False).entries if p not in src.entries and p not in skip),
                       key=lambda p: -p.count("/"))
        for path in extra:
            if (dest / path).is_symlink() or (dest / path).exists():
                _remove(dest / path)

    def _metadata(self, dest: Path, src: vm.Manifest) -> None:
        """Modes, owners and extended attributes from the manifest, deepest first (a read-only directory
        would block the copy, so directories get theirs last)."""
        owners = self._owners()
        unsupported: set[str] = set()
        for path, e in sorted(src.entries.items(), key=lambda kv: (-kv[0].count("/"), kv[0]), reverse=False):
            if e.kind in vm.SPECIAL:
                continue
            local = dest if path == "." else dest / path
            if owners:
                os.chown(local, e.uid, e.gid, follow_symlinks=False)
            if e.kind != "symlink":
                os.chmod(local, e.mode)
            wanted = src.xattrs.get(path, {})
            for name, value in wanted.items():
                try:
                    os.setxattr(local, name, value, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                        raise
                    unsupported.add(name)
            if src.xattrs_read and e.kind != "symlink":
                _drop_stray_xattrs(local, wanted)
        if unsupported:
            self.ctx.log.warning("extended attributes the target does not support: not copied",
                                 names=sorted(unsupported))
        if not src.xattrs_read:  # no getfattr in the helper image: whatever the volume has is not carried
            self.ctx.log.warning("the helper image cannot read extended attributes (no getfattr): any in the volume "
                                 "are not copied; give helper_image an image with getfattr (the attr package) "
                                 "to carry them", volume=self.params.volume)
        self.ctx.record(xattrs_read=src.xattrs_read, xattrs_unsupported=sorted(unsupported))

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
                        name = vm.safe(member.name)
                        if name not in wanted:
                            raise PermanentError(f"{self.ctx.step_id}: unexpected file in the tar stream: {name!r}")
                        src = tar.extractfile(member)
                        assert src is not None
                        final = dest / name
                        self._inside(dest, final)
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
        src = self._source_manifest()
        self._refuse_specials(src)
        differ = self._differences(src, dest)
        if differ:
            raise PermanentError(f"{self.ctx.step_id}: {dest} does not match volume {self.params.volume}: "
                                 f"{len(differ)} difference(s): " + "; ".join(differ[:5])
                                 + ("; ..." if len(differ) > 5 else "") + "; run the step again to copy what changed")
        kinds: dict[str, int] = {}
        for e in src.entries.values():
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        self.ctx.record(verified_files=kinds.get("file", 0), verified_entries=len(src.entries), verified_kinds=kinds,
                        hardlink_groups=len(src.hardlink_groups()), verified_at=time.time())

    def rollback(self) -> None:
        """The source was only read. The target is put back as it was when it held nothing before the copy;
        a target that already held files (a final sync over an earlier copy) is left as it is."""
        import shutil

        f, dest = self.ctx.facts, self._dest()
        if isinstance(dest, vc.Claim):
            if f.get("target_was_empty") and self._cluster_has(dest):
                with self._claim_pod(dest) as pod:
                    vc.clear(self._cluster(), dest, pod)
            return
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
