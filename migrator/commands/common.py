"""What every verb shares: loading the runbook against the step catalogue, and an engine wired to the
adapters it reaches only through hooks (alembic's command.py gets the same from its Config)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from migrator.errors import InputError, RefusedError
from migrator.progress import ask
from migrator.runbook import builtin


def load(runbook_path: Path | str, *, check_secrets: bool = True) -> Any:
    """The runbook at a path, or a shipped one by `builtin:NAME` (migrator/runbook/builtin.py)."""
    from migrator.steps.catalogue import load_runbook

    try:
        path = builtin.resolve(runbook_path, Path.cwd()) if builtin.is_builtin(runbook_path) else Path(runbook_path)
    except ValueError as exc:
        raise InputError(f"--runbook: {exc}") from None
    if not path.is_file():
        hint = (" (the default is the sandbox's, from a checkout; give --runbook FILE, a builtin: one such as "
                "builtin:runbooks/examples/local.yaml, or write one with `migrate init NAME`)"
                if str(runbook_path) == "runbooks/sandbox.yaml" else "")
        raise InputError(f"{path}: file not found{hint}")
    return load_runbook(path, check_secrets=check_secrets)


def _openbao_for_secrets(resource: Any, runbook: Any, secrets: Any) -> Any:
    # Imported on first use: hvac is heavy, and `migrate status` builds an engine too.
    from migrator.adapters.openbao import secrets_client

    return secrets_client(resource, runbook, secrets)


def new_engine(runbook: Any, state_dir: Path, options: Any = None, say: Any = None) -> Any:
    """An Engine on a loaded runbook, wired to the adapters it reaches only through hooks."""
    from migrator.engine.engine import Engine

    return Engine(runbook, state_dir, options, say, openbao=_openbao_for_secrets)


def state_dir_for(runbook: Any, override: Path | None) -> Path:
    if override is not None:
        return override
    if os.environ.get("MIGRATE_STATE_DIR"):
        return Path(os.environ["MIGRATE_STATE_DIR"])
    if runbook.file.state_dir:
        return (runbook.dir / runbook.file.state_dir).resolve()
    return Path("state").resolve()


def engine_for(runbook_path: Path, state_dir: Path | None, *, dry_run: bool = False, yes: bool = False,
               accept_changes: bool = False, check_secrets: bool = True, say: Any = None,
               approve: list[str] | None = None, approve_all: bool = False, parallel: int | None = None) -> Any:
    from migrator.engine.engine import Options

    runbook = load(runbook_path, check_secrets=check_secrets)
    options = Options(dry_run=dry_run, yes=yes, accept_changes=accept_changes,
                      approved=approved_steps(runbook, approve or []), approve_all=approve_all,
                      interactive=sys.stdin.isatty(), parallel=parallel)
    return new_engine(runbook, state_dir_for(runbook, state_dir), options, say=say)


def approved_steps(runbook: Any, approve: list[str]) -> set[str]:
    """The --approve STEP answers, each naming an approval step of the runbook."""
    uses = {s.id: s.spec.uses for s in runbook.steps}
    for step_id in approve:
        if step_id not in uses:
            raise InputError(f"--approve {step_id}: no step {step_id!r} in {runbook.path}")
        if uses[step_id] != "approval":
            raise InputError(f"--approve {step_id}: {step_id!r} is a {uses[step_id]} step, not an approval gate")
    return set(approve)


def refuse_installed_templates(runbook: Any) -> None:
    """A runbook shipped inside the installed package is a template: run from there, its relative
    paths (the example's work folder) would write into site-packages."""
    if builtin.packaged() and builtin.root() in Path(runbook.path).resolve().parents:
        raise InputError(f"{runbook.path}: a builtin runbook is a template; copy it first: "
                         f"migrate init NAME --from builtin:{Path(runbook.path).resolve().relative_to(builtin.root())}")


def refuse_failpoints_on_production(runbook: Any) -> None:
    """MIGRATE_FAILPOINTS left in a shell after a rehearsal must not crash a production run on purpose."""
    if runbook.file.production and os.environ.get("MIGRATE_FAILPOINTS", "").strip():
        raise InputError(f"{runbook.path}: production runbook {runbook.name!r}: MIGRATE_FAILPOINTS is set; "
                         "failpoints are for rehearsals and tests: unset it")


PLACEHOLDER = "TODO-"  # what `migrate init` writes where the new environment must give a value


def placeholders(value: Any, where: str = "") -> list[str]:
    """The fields (dotted paths) of `value` still holding one of `migrate init`'s TODO- placeholders."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if str(key).startswith(PLACEHOLDER):
                found.append(path)
            found += placeholders(item, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += placeholders(item, f"{where}[{i}]")
    elif isinstance(value, str) and value.startswith(PLACEHOLDER):
        found.append(where)
    return found


def refuse_placeholders(runbook: Any) -> None:
    """A runbook `migrate init` wrote, with TODO- values left: refused before anything runs, every one named
    (the alternative is a DNS error on `TODO-dns-primary-address` in the middle of the night)."""
    found = [f"environment.{p}" for p in placeholders(runbook.environment.model_dump(exclude_none=True))]
    found += [f"vars.{p}" for p in placeholders(dict(runbook.file.vars or {}))]
    if found:
        problems = [f"{runbook.path}: {field}: still a {PLACEHOLDER}... placeholder from `migrate init`; fill it in"
                    for field in found]
        raise InputError(problems[0], problems)


def guard_production(engine: Any, yes: bool, verb: str) -> None:
    """Before a verb that changes the world (run, resume, rollback): no failpoints on production, no
    builtin template run in place, no TODO- placeholder left; a production runbook needs --yes, or its
    name typed on a terminal."""
    rb = engine.runbook
    refuse_failpoints_on_production(rb)
    if not engine.options.dry_run:
        refuse_installed_templates(rb)
        refuse_placeholders(rb)
    if not rb.file.production or yes or engine.options.dry_run:
        return
    if not sys.stdin.isatty():
        raise RefusedError(f"{rb.path}: production runbook {rb.name!r}: pass --yes to {verb} it non-interactively")

    if ask(f"This is the PRODUCTION runbook {rb.name!r}. Type its name to {verb}: ").strip() != rb.name:
        raise RefusedError("not confirmed; nothing was done")
