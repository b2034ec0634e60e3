"""`migrate rehearse`: the whole migration against the local sandbox (the default), with a report, or
`--kind NAME [--keep]`: the phases against a disposable kind cluster.

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
from pathlib import Path
from typing import Annotated

import typer

from migrator.errors import InputError, PermanentError

KIND_RUNBOOK = "runbooks/kind.yaml"
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
CREATE_TIMEOUT = 600  # kind pulls and boots a node image: minutes, but bounded
DELETE_TIMEOUT = 180


def register(app: typer.Typer) -> None:
    @app.command()
    def rehearse(
        kind: Annotated[str | None, typer.Option("--kind", help="Create a disposable kind cluster NAME and run "
                                                                "the phases against it.")] = None,
        keep: Annotated[bool, typer.Option("--keep", help="Keep the kind cluster afterwards.")] = False,
        runbook: Annotated[Path | None, typer.Option("--runbook", "-r", envvar="MIGRATE_RUNBOOK",
                                                     help="Default: runbooks/sandbox.yaml, or kind.yaml with --kind.")] = None,
        phase: Annotated[list[int] | None, typer.Option("--phase", "-p", help="Phase number; repeatable.")] = None,
        state_dir: Annotated[Path | None, typer.Option("--state-dir", envvar="MIGRATE_STATE_DIR")] = None,
        fresh: Annotated[bool, typer.Option("--fresh", help="Start over: sandbox torn down and rebuilt, "
                                                            "state and report forgotten.")] = False,
    ) -> None:
        """Rehearse the whole migration (phases 1-5) on the sandbox, or on a throwaway kind cluster."""
        if kind is None:
            from migrator import rehearsal

            if phase:
                raise InputError("rehearse: --phase is for --kind; on the sandbox use `migrate run --phase N`")
            rehearsal.rehearse(runbook or Path("runbooks/sandbox.yaml"), state_dir, fresh=fresh,
                               say=lambda line: print(line, flush=True))
            return
        raise typer.Exit(rehearse_kind(kind, keep, runbook or Path(KIND_RUNBOOK), phase or []))


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
    from migrator.commands import load, new_engine
    from migrator.engine.engine import Options
    from migrator.errors import MigratorError

    os.environ["KUBECONFIG"] = str(kubeconfig)  # the kind runbook leaves target.kubeconfig unset
    engine = new_engine(load(runbook), state_dir, Options(yes=True))
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
