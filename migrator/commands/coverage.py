"""The coverage gate of `migrate plan` and `migrate inspect` (migrator.runbook.coverage): every stateful
thing on the VPS mapped to a step or excluded, else InputError (exit 2) listing what is not."""

from __future__ import annotations

from typing import Any

from migrator.errors import InputError, MigratorError


def coverage_gate(runbook: Any, inv: dict[str, Any] | None = None, say: Any = print) -> dict[str, Any] | None:
    """A runbook without a compose.inspect step or without a VPS is not checked; a VPS that does not answer
    is said, not hidden. Each runbook entry naming what the VPS does not have is one line with its FILE:LINE."""
    from migrator.runbook.coverage import evaluate

    source = runbook.environment.source
    if inv is None:
        if source is None or not any(s.spec.uses == "compose.inspect" for s in runbook.steps):
            return None
        from migrator.adapters.docker import DockerRemote
        from migrator.adapters.inventory import collect

        try:
            dr = DockerRemote.from_config(source, runbook.dir)
        except MigratorError as exc:
            say(f"coverage: not checked: the VPS did not answer ({exc})")
            return None
        try:
            inv = collect(dr, source.compose_project)
        finally:
            dr.close()
    cov = evaluate(runbook, inv)
    if cov.errors():
        raise InputError(f"coverage {cov.percent}%: {len(cov.errors())} problem(s)", cov.errors())
    say(f"coverage: {cov.percent}% of {len(cov.things)} stateful things on the VPS mapped to a step or excluded "
        f"({len(cov.mapped)} mapped, {len(cov.excluded)} excluded)")
    return cov.summary()
