"""Chaos: crash the migration at a step and failpoint chosen from a seed, resume, and check that the
platform ends exactly as after the uninterrupted rehearsal (databases, DNS, Kubernetes objects,
OpenBao, uploads, the VPS)."""

from __future__ import annotations

import pytest

from migrator.sandbox import chaos
from tests.e2e.conftest import RUNBOOK, Rehearsal


# Seed 4 crashed at the same step as seed 3 (psra-db-superuser-secret) and cost 97 s of CI; bench/chaos.py runs
# as many seeds as one likes.
@pytest.mark.parametrize("seed", [1, 2, 3, 5])
def test_crash_and_resume_converge(rehearsed: Rehearsal, seed: int) -> None:
    outcome = chaos.run_once(RUNBOOK, rehearsed.state_dir, seed, rehearsed.reference)
    assert outcome.crashed, outcome.describe()
    assert outcome.resumed, outcome.describe()
    assert outcome.differences == [], outcome.describe()
