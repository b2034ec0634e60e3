"""One plain function per verb, called by the CLI and by tests. No Typer here."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from migrator.errors import InputError, RefusedError


def load(runbook_path: Path, *, check_secrets: bool = True) -> Any:
    from migrator.steps.catalogue import load_runbook

    return load_runbook(runbook_path, check_secrets=check_secrets)


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
               accept_changes: bool = False, check_secrets: bool = True, say: Any = None) -> Any:
    from migrator.engine.engine import Options

    runbook = load(runbook_path, check_secrets=check_secrets)
    approved = {x.strip() for x in os.environ.get("MIGRATE_APPROVE", "").split(",") if x.strip()}
    options = Options(dry_run=dry_run, yes=yes, accept_changes=accept_changes, approved=approved,
                      interactive=sys.stdin.isatty())
    return new_engine(runbook, state_dir_for(runbook, state_dir), options, say=say)


def guard_production(engine: Any, yes: bool, verb: str) -> None:
    """A production runbook needs --yes, or the operator typing its name on a terminal."""
    rb = engine.runbook
    if not rb.file.production or yes or engine.options.dry_run:
        return
    if not sys.stdin.isatty():
        raise RefusedError(f"{rb.path}: production runbook {rb.name!r}: pass --yes to {verb} it non-interactively")
    sys.stderr.write(f"This is the PRODUCTION runbook {rb.name!r}. Type its name to {verb}: ")
    sys.stderr.flush()
    if sys.stdin.readline().strip() != rb.name:
        raise RefusedError("not confirmed; nothing was done")


def run(runbook: Path, state_dir: Path | None, phases: list[int], steps: list[str], dry_run: bool, yes: bool,
        accept_changes: bool) -> int:
    engine = engine_for(runbook, state_dir, dry_run=dry_run, yes=yes, accept_changes=accept_changes)
    guard_production(engine, yes, "run")
    return int(engine.run(phases or None, steps or None))


def resume(runbook: Path, state_dir: Path | None, yes: bool, accept_changes: bool) -> int:
    engine = engine_for(runbook, state_dir, yes=yes, accept_changes=accept_changes)
    guard_production(engine, yes, "resume")
    return int(engine.resume())


def plan(runbook: Path, state_dir: Path | None, phases: list[int], steps: list[str], as_json: bool) -> list[dict[str, Any]]:
    engine = engine_for(runbook, state_dir, dry_run=True, say=(lambda _t: None) if as_json else None)
    result: list[dict[str, Any]] = engine.plan(phases or None, steps or None)
    if as_json:
        print(json.dumps({"runbook": engine.runbook.name, "plan": result}, indent=2))
    return result


def rollback(runbook: Path, state_dir: Path | None, step: str | None, phase: int | None, cascade: bool,
             dry_run: bool, yes: bool, everything: bool = False) -> int:
    if sum((step is not None, phase is not None, everything)) != 1:
        raise InputError("rollback: give exactly one of --step ID, --phase N or --all")
    engine = engine_for(runbook, state_dir, dry_run=dry_run, yes=yes)
    guard_production(engine, yes, "roll back")
    return int(engine.rollback(step, phase, cascade, everything))


def status(runbook: Path, state_dir: Path | None, as_json: bool) -> dict[str, Any]:
    engine = engine_for(runbook, state_dir, check_secrets=False)
    data: dict[str, Any] = engine.status()
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        print(render_status(data))
    return data


def render_status(data: dict[str, Any]) -> str:
    import time

    lines = [f"runbook {data['runbook']} ({data['runbook_path']})", f"state   {data['state_file']}  lock: {data['lock']}"]
    if data.get("runbook_changed"):
        lines.append("note    the runbook changed since the last run")
    phase = None
    width = max((len(s["id"]) for s in data["steps"]), default=10)
    for s in data["steps"]:
        if s["phase"] != phase:
            phase = s["phase"]
            lines.append(f"\nphase {phase}")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["finished_at"])) if s["finished_at"] else ""
        extra = f"  {s['error']}" if s.get("error") and s["status"] in ("failed", "interrupted") else ""
        stamped = " (stamped)" if s.get("stamped") else ""
        lines.append(f"  {s['id']:<{width}}  {s['status']:<11} attempts={s['attempts']:<2} {when}{stamped}{extra}")
    return "\n".join(lines)


def stamp(runbook: Path, state_dir: Path | None, step: str, status_: str) -> None:
    engine = engine_for(runbook, state_dir, check_secrets=False)
    engine.stamp(step, status_)
    print(f"stamped {step} as {status_}")


def unlock(runbook: Path, state_dir: Path | None) -> str:
    engine = engine_for(runbook, state_dir, check_secrets=False)
    lock = engine.session.lock
    if lock.is_held():
        raise RefusedError(f"{lock.path}: held by a running process ({lock.describe_holder_liveness()}); "
                           "stop it instead of unlocking")
    if lock.path.exists():
        who = lock.holder()
        lock.path.unlink()
        engine.session.journal.append("unlocked", previous=who)
        return f"removed {lock.path}" + (f" (left by pid {who.get('pid')})" if who else "")
    return "no lock file"


# -- the `migrate inspect` verb ---------------------------------------------------------------------

def inspect(runbook_path: Path, state_dir: Path | None, *, as_json: bool = False, show_diff: bool = False,
            say: Any = print) -> dict[str, Any]:
    """Collect the inventory; store it in the state (or, with show_diff, compare with the stored one)."""
    from migrator.adapters.docker import DockerRemote
    from migrator.adapters.inventory import STATE_KEY, collect, diff, render

    engine = engine_for(runbook_path, state_dir, check_secrets=False)
    source = engine.runbook.environment.source
    if source is None:
        raise InputError(f"{runbook_path}: no environment.source (the VPS): nothing to inspect")
    session = engine.session
    with session.locked("inspect"):
        dr = session.resource("docker:source", lambda: DockerRemote.from_config(source, engine.runbook.dir))
        inv = collect(dr, source.compose_project)
        previous = session.state.extra.get(STATE_KEY)
        changes = diff(previous, inv) if (show_diff and previous) else []
        if not show_diff:
            session.state.extra[STATE_KEY] = inv
            session.save()
    if as_json:
        say(json.dumps({"inventory": inv, "diff": changes} if show_diff else inv, indent=2, default=str))
    elif show_diff:
        if previous is None:
            say("no stored inventory to compare with: run `migrate inspect` first")
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(previous.get("collected_at", 0)))
            say(f"changes since the inventory of {when}:" if changes else f"no change since the inventory of {when}")
            for line in changes:
                say(f"  {line}")
    else:
        say(render(inv))
    return {"inventory": inv, "diff": changes}
