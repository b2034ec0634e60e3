"""`migrate rehearse`: the whole migration, phases 1 to 5, against the local sandbox, with a report, or
(`rehearse_kind`) the phases against a disposable kind cluster.

Where `kind` and `docker` are missing (as on the project's CI machines: no registry serves kind's node
image) `--kind` says so in one line and exits 2.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrator.commands import common as commands
from migrator.commands import report
from migrator.errors import InputError, MigratorError, PermanentError

KIND_RUNBOOK = "runbooks/kind.yaml"
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
CREATE_TIMEOUT = 600  # kind pulls and boots a node image: minutes, but bounded
DELETE_TIMEOUT = 180

Say = Callable[[str], None]


def reset_state(state_dir: Path, runbook_name: str) -> None:
    """Forget an earlier rehearsal: its state, journal and report (the lock is left to its owner)."""
    for suffix in (".state.json", ".journal.jsonl", ".report.json", ".report.md", ".timeline.svg"):
        (state_dir / f"{runbook_name}{suffix}").unlink(missing_ok=True)
    backups = state_dir / "backups"
    if backups.is_dir():
        for item in backups.iterdir():
            if item.is_file():
                item.unlink()


def ensure_sandbox(sandbox_dir: Path | None, fresh: bool, say: Say) -> None:
    from migrator.sandbox import platform

    if fresh:
        say("sandbox: tearing down for a fresh rehearsal")
        platform.down(sandbox_dir, log=say)
    if not platform.status(sandbox_dir).up:
        say("sandbox: bringing it up")
        platform.up(sandbox_dir, log=say)


def rehearse(runbook_path: Path, state_dir: Path | None, *, fresh: bool = False, sandbox_dir: Path | None = None,
             with_sandbox: bool = True, say: Say = print, parallel: int | None = None) -> dict[str, Any]:
    """Run every phase (resuming an interrupted rehearsal unless `fresh`), then write the report."""
    # Secrets are files the sandbox writes: check them only once it is up.
    runbook = commands.load(runbook_path, check_secrets=False)
    sdir = commands.state_dir_for(runbook, state_dir)
    if fresh:
        reset_state(sdir, runbook.name)
    if with_sandbox:
        ensure_sandbox(sandbox_dir, fresh, say)
    engine = commands.engine_for(runbook_path, sdir, yes=True, approve_all=True, say=say, parallel=parallel)
    started = time.time()
    error: BaseException | None = None
    try:
        engine.run(command="rehearse")
    except BaseException as exc:  # the report is written whatever happened, then the error goes on
        error = exc
    data = report.build(engine.runbook, engine.session.store.load(runbook.name, str(runbook.path)),
                        engine.session.journal, since=started)
    data["wall_s"] = round(time.time() - started, 3)
    data["parallel"] = engine.parallel()
    json_path, md_path = report.write(data, sdir)
    say(report.summary(data))
    say(f"report: {json_path} and {md_path}")
    if error is not None:
        raise error
    return data


# -- on a disposable kind cluster ------------------------------------------------------------------

def missing_tools() -> list[str]:
    return [tool for tool in ("kind", "docker") if shutil.which(tool) is None]


def rehearse_kind(name: str, keep: bool, runbook: Path, phases: list[int]) -> int:
    if not NAME.match(name):
        raise InputError(f"--kind {name}: expected a short lowercase name like 'rehearsal'")
    missing = missing_tools()
    if missing:
        raise InputError(f"rehearse --kind: {' and '.join(missing)} not installed (needed to create a kind "
                         f"cluster); install {'them' if len(missing) > 1 else 'it'}, or rehearse against the sandbox")
    if not runbook.is_file():
        raise InputError(f"--runbook {runbook}: no such file")
    work = Path(tempfile.mkdtemp(prefix=f"migrate-kind-{name}-"))
    kubeconfig = work / "kubeconfig"
    print(f"creating kind cluster {name} (kubeconfig {kubeconfig})", flush=True)
    _kind(["create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig), "--wait", "120s"], CREATE_TIMEOUT)
    try:
        return _run(runbook, work / "state", kubeconfig, phases)
    finally:
        if keep:
            print(f"kept kind cluster {name}: KUBECONFIG={kubeconfig}", flush=True)
        else:
            _kind(["delete", "cluster", "--name", name, "--kubeconfig", str(kubeconfig)], DELETE_TIMEOUT)
            print(f"deleted kind cluster {name}", flush=True)


def _kind(args: list[str], timeout: float) -> None:
    try:
        proc = subprocess.run(["kind", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PermanentError(f"kind {args[0]} {args[1]} did not finish within {timeout:.0f}s") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise PermanentError(f"kind {args[0]} {args[1]} exited {proc.returncode}: {tail}")


def _run(runbook: Path, state_dir: Path, kubeconfig: Path, phases: list[int]) -> int:
    from migrator.engine.engine import Options

    os.environ["KUBECONFIG"] = str(kubeconfig)  # the kind runbook leaves target.kubeconfig unset
    engine = commands.new_engine(commands.load(runbook), state_dir, Options(yes=True, approve_all=True))
    started = time.monotonic()
    failed: str | None = None
    try:
        engine.run(phases or None)
    except MigratorError as exc:
        failed = str(exc)
    print(f"\nrehearsal on kind: {time.monotonic() - started:.1f}s", flush=True)
    for step in engine.status()["steps"]:
        took = (step["finished_at"] - step["started_at"]) if step["finished_at"] and step["started_at"] else None
        print(f"  [{step['phase']}] {step['id']:<28} {step['status']:<12} "
              f"{f'{took:.1f}s' if took is not None else '':>8}  {step['error'] or ''}", flush=True)
    if failed:
        print(f"FAILED: {failed}", flush=True)
        return 1
    return 0
