"""What only the HTTP API providers have: TLS verified against the runbook's CA bundle, a refused write
undone, and the runbook's provider section checked before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dns.bind_fixture import BindPair
from tests.dns.conftest import dns_runbook
from tests.dns.providers import ProviderZone
from tests.util import migrate


@pytest.fixture(params=["transip", "cloudflare"])
def api_zone(request: pytest.FixtureRequest, bind: BindPair, tmp_path: Path) -> ProviderZone:
    z = ProviderZone(request.param, bind, tmp_path / "api").start()
    request.addfinalizer(z.stop)
    return z


def test_api_certificate_verified_against_the_runbook_ca_only(tmp_path: Path, api_zone: ProviderZone) -> None:
    """Without environment.dns.ca_file the stand-in's certificate (a private CA) is refused: one line, no write."""
    bind = api_zone.bind
    rb = dns_runbook(tmp_path / "rb", api_zone, ca=False)
    before = bind.axfr(without_serial=False)
    proc = migrate("run", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"), "--step", "dns-lower-ttl")
    assert proc.returncode == 1
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1, proc.stderr
    assert (f"{api_zone.provider} API at {api_zone.api_url}: TLS verification failed (CERTIFICATE_VERIFY_FAILED"
            in failed[0]) and failed[0].endswith("check environment.dns.ca_file")
    assert "Traceback" not in proc.stderr
    assert bind.axfr(without_serial=False) == before
    assert api_zone.server is not None and api_zone.server.requests == []  # no request got past the handshake


def test_a_refused_write_undoes_the_writes_before_it(tmp_path: Path, api_zone: ProviderZone) -> None:
    """A TTL the provider refuses (TransIP takes 60/300/3600/86400, Cloudflare 60 and up): what was written
    before the refusal is undone, and the error says so."""
    bind = api_zone.bind
    before = bind.axfr()
    rb = dns_runbook(tmp_path / "rb", api_zone, ttl=2)
    proc = migrate("run", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"), "--step", "dns-lower-ttl")
    assert proc.returncode == 1
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1, proc.stderr
    why = ("HTTP 406: Expire '2' is invalid" if api_zone.provider == "transip"
           else "HTTP 400: Invalid TTL. Must be between 60")
    assert why in failed[0]
    # TransIP re-times by delete and create: the three deletes made are undone. Cloudflare re-times in place,
    # so its first PUT is refused and nothing was written.
    undone = "the 3 writes made were undone" if api_zone.provider == "transip" else "nothing had been written"
    assert undone in failed[0]
    assert bind.axfr() == before  # every record back, with its TTL


def test_provider_section_checked_before_anything_runs(tmp_path: Path, api_zone: ProviderZone) -> None:
    from tests.dns.conftest import dns_steps
    from tests.util import write_runbook

    env = api_zone.env_dns()
    del env[api_zone.provider]
    rb = write_runbook(tmp_path / "rb", dns_steps(), environment={"dns": env})
    proc = migrate("plan", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1, proc.stderr
    assert f"provider {api_zone.provider} needs {api_zone.provider}" in lines[0] and "Traceback" not in proc.stderr


def test_credential_secret_must_be_defined(tmp_path: Path, api_zone: ProviderZone) -> None:
    from tests.dns.conftest import dns_steps
    from tests.util import write_runbook

    rb = write_runbook(tmp_path / "rb", dns_steps(), environment={"dns": api_zone.env_dns()})
    proc = migrate("plan", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2, proc.stderr
    field = "private_key" if api_zone.provider == "transip" else "token"
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and (f"environment.dns.{api_zone.provider}.{field}: secret 'dns_credential' is not "
                                "defined in the runbook's secrets") in lines[0], proc.stderr
