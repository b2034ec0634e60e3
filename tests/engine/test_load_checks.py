"""Each step's class and Params are resolved once, when the runbook loads: a step type's `check_params`
turns a mistake against the environment into a FILE:LINE error then, not during the phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migrator.errors import InputError
from migrator.runbook.loader import params_model
from migrator.steps.catalogue import load_runbook
from tests.util import write_runbook

SOURCE = {"ssh": {"host": "127.0.0.1", "port": 2222, "max_sessions": 6}, "address": "192.0.2.10"}


def copy_step(jobs: int, **source: Any) -> dict[str, Any]:
    return {"id": "copy-app", "uses": "postgres.copy",
            "with": {"source": {"container": "db", "database": "app", **source},
                     "target": {"endpoint": "pg", "database": "app"}, "jobs": jobs}}


def test_jobs_beyond_the_ssh_session_budget_is_a_load_error(tmp_path: Path) -> None:
    rb = write_runbook(tmp_path, {2: [copy_step(5)]}, environment={"source": SOURCE})
    with pytest.raises(InputError) as caught:
        load_runbook(rb, check_secrets=False)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{tmp_path / 'phase2.yaml'}:")
    where, rest = problem.split(": ", 1)
    assert int(where.rsplit(":", 1)[1]) > 1  # the line of `jobs`, not of the file
    assert rest.startswith("steps.0.with.jobs: 5 needs 7 SSH sessions at once; "
                           "environment.source.ssh.max_sessions is 6")


def test_within_the_budget_the_loaded_step_carries_its_class_and_params(tmp_path: Path) -> None:
    rb = write_runbook(tmp_path, {2: [copy_step(4)]}, environment={"source": SOURCE})
    step = load_runbook(rb, check_secrets=False).step("copy-app")
    assert step.step_type.type_name == "postgres.copy"
    assert step.params.jobs == 4 and step.params.source.container == "db"
    given = params_model(step, lambda name: pytest.fail(f"no secret to resolve, asked for {name}"))
    assert given == step.params and given is not step.params  # a copy: no step changes another's


def test_params_with_secrets_are_made_at_run_time_only(tmp_path: Path) -> None:
    canary = "canary-9ZpQ"
    rb = write_runbook(tmp_path, {2: [copy_step(2, password="${secrets.pw}")]}, environment={"source": SOURCE},
                       secrets={"pw": {"env": "TEST_LOAD_CHECKS_PW"}})
    step = load_runbook(rb, check_secrets=False).step("copy-app")
    assert step.params is None  # nothing holding a secret is kept from the load
    assert step.params_raw["source"]["password"] == "${secrets.pw}"
    made = params_model(step, lambda name: canary if name == "pw" else pytest.fail(name))
    assert made.source.password == canary  # type: ignore[attr-defined]
