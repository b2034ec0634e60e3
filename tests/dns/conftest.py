"""Fixtures for the dns steps: a fresh BIND primary/secondary pair per test, the provider in front of it
(RFC 2136, or the TransIP/Cloudflare API stand-in writing into it), and runbooks pointing at it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dns.bind_fixture import NAMED, BindPair
from tests.dns.providers import PROVIDERS, ProviderZone
from tests.util import write_runbook

if not shutil.which(NAMED):
    pytest.skip("BIND (named) is not installed", allow_module_level=True)

RECORDS = ["rentguy", "api.rentguy", "psra.sevensa.test."]  # relative and FQDN
NEW = "127.0.0.20"


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[BindPair]:
    with BindPair(tmp_path / "bind") as pair:
        yield pair


@pytest.fixture(params=PROVIDERS)
def zone(request: pytest.FixtureRequest, bind: BindPair, tmp_path: Path) -> Iterator[ProviderZone]:
    """The BIND pair behind each provider in turn."""
    z = ProviderZone(request.param, bind, tmp_path / "api").start()
    try:
        yield z
    finally:
        z.stop()


def dns_steps(*, ttl: int = 2, wait_override: float | None = 1, gate_timeout: float = 20,
              records: list[str] | None = None, target: str = NEW) -> dict[int, list[dict[str, Any]]]:
    """Three phases: lower-ttl, cutover, restore-ttl (the phase files an operator writes)."""
    records = records or RECORDS
    cutover: dict[str, Any] = {"records": records, "target": target, "lower_ttl_step": "dns-lower-ttl"}
    if wait_override is not None:
        cutover["ttl_wait_override_s"] = wait_override
    return {
        1: [{"id": "dns-lower-ttl", "uses": "dns.lower-ttl", "with": {"records": records, "ttl": ttl},
             "gate": {"timeout": gate_timeout, "interval": 0.2}}],
        2: [{"id": "dns-cutover", "uses": "dns.cutover", "with": cutover, "retries": 1,
             "gate": {"timeout": gate_timeout, "interval": 0.2}}],
        3: [{"id": "dns-restore-ttl", "uses": "dns.restore-ttl", "with": {"records": records},
             "gate": {"timeout": gate_timeout, "interval": 0.2}}],
    }


def dns_runbook(directory: Path, zone: ProviderZone | BindPair, *, key: str | None = None, ca: bool = True,
                **steps: Any) -> Path:
    """A runbook on `zone` (a bare BindPair: RFC 2136 to it), its credential (or `key`) in a 0600 file
    referenced as the runbook secret `zone.secret_name`; the lowered TTL is the provider's lowest unless given."""
    if isinstance(zone, BindPair):
        zone = ProviderZone("rfc2136", zone, directory / "api").start()
    steps.setdefault("ttl", zone.low_ttl)
    ref = zone.write_credential(directory, key)
    return write_runbook(directory, dns_steps(**steps), environment={"dns": zone.env_dns(ca=ca)},
                         secrets={zone.secret_name: ref})
