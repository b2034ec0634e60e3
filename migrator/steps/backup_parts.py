"""The artefacts of a backup, each made into a local file and put back from one.

- postgres: `pg_dump --format=custom` of one target database (run here, against the endpoint the
  migration reached it by; the password in the child's environment, never its argv), restored with
  `pg_restore --clean --if-exists --single-transaction` (or `--create` when the database is gone);
- openbao: the target OpenBao's raft snapshot, put back by a force restore;
- volume: a tar of a volume target's directory (owners, modes, symlinks kept) and the sha256 of every
  file in it (volume_manifest.scan); unpacked beside the directory, every file checked against the
  manifest, and only then swapped in.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

from migrator.adapters.localproc import run_child
from migrator.adapters.pgsource import local_tool
from migrator.adapters.postgres import clean_env, database_exists
from migrator.errors import PermanentError
from migrator.steps import volume_claim
from migrator.steps import volume_manifest as vm
from migrator.steps.base import StepContext
from migrator.steps.openbao import Bao
from migrator.steps.postgres.pg_common import TargetParams, target_conn
from migrator.steps.volume_claim import Claim

SETTLE_S = 3.0
CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _pg_tool(ctx: StepContext, argv: list[str], conn: Any, what: str) -> str:

    env = {k: v for k, v in clean_env(conn.env()).items()
           if k.startswith("PG") or k in ("LANG", "HOME")}
    env["PATH"] = CHILD_PATH
    env.setdefault("HOME", "/")
    res = run_child([local_tool(argv[0]), *argv[1:]], what=what, env=env, cwd=None,
                    timeout=max(60.0, ctx.remaining()), recorder=ctx.child_recorder())
    if res.returncode != 0:
        tail = (res.stderr or "").strip().splitlines()[-3:]
        raise PermanentError(f"{what} exited {res.returncode}: {' / '.join(tail)[-400:]}")
    return res.stderr or ""


# -- postgres ------------------------------------------------------------------------------------------
def pg_key(t: TargetParams) -> str:
    return f"postgres/{t.endpoint}/{t.database}.dump"


def dump_postgres(ctx: StepContext, t: TargetParams, out: Path) -> None:
    conn = target_conn(ctx, t)
    _pg_tool(ctx, ["pg_dump", "--format=custom", "--no-password", "--file", str(out), "--dbname", t.database],
             conn, f"pg_dump {t.database} on {t.endpoint}")


def restore_postgres(ctx: StepContext, t: TargetParams, dump: Path) -> str:
    """Put the dump back; 'replaced' (the database existed) or 'created'."""
    conn = target_conn(ctx, t)
    what = f"pg_restore {t.database} on {t.endpoint}"
    if database_exists(conn, t.database):
        _pg_tool(ctx, ["pg_restore", "--no-password", "--clean", "--if-exists", "--single-transaction",
                       "--exit-on-error", "--dbname", t.database, str(dump)], conn, what)
        return "replaced"
    _pg_tool(ctx, ["pg_restore", "--no-password", "--create", "--exit-on-error", "--dbname", "postgres", str(dump)],
             conn.with_database("postgres"), what)
    return "created"


# -- openbao ---------------------------------------------------------------------------------------------
OPENBAO_KEY = "openbao/target.snap"


def has_openbao(ctx: StepContext) -> bool:
    return ctx.runbook.environment.openbao is not None


def snapshot_openbao(ctx: StepContext, out: Path) -> None:
    from migrator.adapters import openbao as ob

    client = Bao(ctx).target()
    if ob.sealed(client):
        raise PermanentError(f"{ctx.step_id}: the target OpenBao is sealed: unseal it before the backup")
    _write_private(out, ob.take_snapshot(client))


def restore_openbao(ctx: StepContext, snap: Path, unseal_keys: list[str], wait_s: float) -> None:
    """Force-restore the snapshot; a node that seals itself afterwards is unsealed with `unseal_keys`.
    A node may seal itself a moment after the restore answered: it is watched for SETTLE_S first."""
    import time

    from migrator.adapters import openbao as ob

    client = Bao(ctx).target()
    ob.force_restore(client, snap.read_bytes())
    deadline = time.monotonic() + wait_s
    settled = time.monotonic() + min(SETTLE_S, wait_s)
    while time.monotonic() < deadline:
        if ob.sealed(client):
            if not unseal_keys:
                raise PermanentError(f"{ctx.step_id}: the target OpenBao sealed itself after the restore; give "
                                     "with.openbao_unseal_keys")
            ob.unseal_with(client, unseal_keys, "unseal after restore", wait_s=max(1.0, deadline - time.monotonic()))
        elif time.monotonic() >= settled and ob.token_valid(client):
            return
        time.sleep(0.2)
    raise PermanentError(f"{ctx.step_id}: the target OpenBao does not accept its token {wait_s:g}s after the restore")


# -- volumes ---------------------------------------------------------------------------------------------
def volume_key(name: str) -> str:
    return f"volumes/{name}.tar"


def volume_root(ctx: StepContext, name: str) -> Path | Claim:
    """Where a volume target lives: the host directory environment.target.volume_paths names for it (the
    benchmarks, tests), else its claim (the namespace of the volume.copy step that fills it)."""
    target = ctx.runbook.environment.target
    if target is not None and name in target.volume_paths:
        return ctx.path(target.volume_paths[name])
    for step in ctx.runbook.steps:
        p = step.params
        if step.spec.uses == "volume.copy" and getattr(p, "target", None) == name and getattr(p, "namespace", None):
            return Claim(str(p.namespace), name)
    raise PermanentError(f"{ctx.step_id}: no volume.copy step fills the claim {name!r} (its namespace is taken "
                         f"from there), nor does environment.target.volume_paths[{name!r}] name a directory")


def backup_volume(ctx: StepContext, where: Path | Claim, out: Path) -> dict[str, dict[str, Any]]:
    if isinstance(where, Claim):
        with volume_claim.helper(ctx, where) as (cluster, pod):
            return volume_claim.archive(cluster, where, pod, out)
    return tar_volume(where, out)


def restore_volume_to(ctx: StepContext, where: Path | Claim, archive: Path, files: dict[str, dict[str, Any]],
                      label: str) -> int:
    if isinstance(where, Claim):
        with volume_claim.helper(ctx, where) as (cluster, pod):
            return volume_claim.restore(cluster, where, pod, archive, files, label)
    return restore_volume(where, archive, files, label)


def volume_files(ctx: StepContext, where: Path | Claim) -> dict[str, vm.Entry]:
    if isinstance(where, Claim):
        with volume_claim.helper(ctx, where) as (cluster, pod):
            return volume_claim.files_of(cluster, where, pod)
    return vm.scan(where).files()


def tar_volume(root: Path, out: Path) -> dict[str, dict[str, Any]]:
    """The tar of `root` (entries relative to it) and {path: {sha256, size}} of its regular files."""
    if not root.is_dir():
        raise PermanentError(f"volume directory {root} does not exist")
    manifest = vm.scan(root)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in manifest.entries if p != "."):
            e = manifest.entries[path]
            if e.kind in vm.SPECIAL and e.kind == "socket":
                continue  # a socket cannot be archived; it is recreated by whoever listens on it
            tar.add(root / path, arcname=path, recursive=False)
    os.chmod(out, 0o600)
    return {p: {"sha256": e.sha256, "size": e.size} for p, e in sorted(manifest.files().items())}


def restore_volume(root: Path, archive: Path, files: dict[str, dict[str, Any]], label: str) -> int:
    """Unpack beside `root`, check every file against `files`, then replace root's contents. Returns files."""
    work = root.with_name(root.name + ".migrator-restore")
    if work.exists():
        shutil.rmtree(work)  # left by an interrupted restore
    work.mkdir(mode=0o700)
    try:
        with tarfile.open(archive, "r") as tar:
            tar.extractall(work, filter="tar" if os.geteuid() == 0 else "data")
        got = vm.scan(work).files()
        bad = sorted(p for p, f in files.items() if p not in got or got[p].sha256 != f["sha256"])
        extra = sorted(set(got) - set(files))
        if bad or extra:
            shown = ", ".join((bad + extra)[:5])
            raise PermanentError(f"{label}: {len(bad)} file(s) that do not match the manifest, {len(extra)} not in "
                                 f"it ({shown}): refusing to restore this volume")
        root.mkdir(parents=True, exist_ok=True)
        for child in list(root.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        for child in list(work.iterdir()):
            os.replace(child, root / child.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return len(files)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
