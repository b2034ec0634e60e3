"""The typed facts one step records and another reads: the stored JSON shape parses, extras are kept."""

from __future__ import annotations

from migrator.steps.compose import FreezeFacts
from migrator.steps.dns import CutoverFacts, LowerTTLFacts
from migrator.steps.keycloak import CountsFacts
from migrator.steps.postgres.pg_replicate import ReplicateFacts


def test_lower_ttl_facts_as_recorded() -> None:
    stored = {"old": {"www.example.org.|A": {"ttl": 3600, "rdatas": ["192.0.2.1"]}, "www.example.org.|AAAA": None},
              "ttl": 60, "max_old_ttl": 3600, "lowered_at": 1700000000.5, "from_a_later_version": True}
    facts = LowerTTLFacts.model_validate(stored)
    was = facts.old["www.example.org.|A"]
    assert was is not None and was.ttl == 3600 and was.rdatas == ["192.0.2.1"]
    assert facts.old["www.example.org.|AAAA"] is None
    assert facts.lowered_at == 1700000000.5 and facts.max_old_ttl == 3600
    assert facts.model_extra == {"from_a_later_version": True}


def test_facts_of_a_step_that_has_not_run_are_empty() -> None:
    assert LowerTTLFacts.model_validate({}).old == {} and LowerTTLFacts.model_validate({}).lowered_at is None
    assert CutoverFacts.model_validate({}).written == {}
    assert FreezeFacts.model_validate({}).was_running is None
    assert FreezeFacts.model_validate({"was_running": []}).was_running == []  # ran, stopped nothing
    assert CountsFacts.model_validate({}).source_counts is None
    assert ReplicateFacts.model_validate({}).replica_full == []
