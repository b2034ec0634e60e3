"""The DNS cutover against two real BIND servers: lower, wait, flip, verify everywhere, roll back exactly."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import GateNotReady, PermanentError
from tests.dns.bind_fixture import BindPair
from tests.dns.conftest import NEW, dns_runbook
from tests.dns.providers import ProviderZone
from tests.util import engine

NAMES = ["rentguy", "api.rentguy", "psra"]


def answers(bind: BindPair, server: Any = None, rtype: str = "A") -> dict[str, tuple[int, list[str]]]:
    return {n: bind.query(n, rtype, server=server) for n in NAMES}


def wait_lower_ttl_passed(seconds: float = 1.1) -> None:
    time.sleep(seconds)  # the runbook's ttl_wait_override_s is 1s


def test_lower_cutover_restore_and_roll_back_everything(tmp_path: Path, zone: ProviderZone,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    bind, low = zone.bind, zone.low_ttl
    from migrator.steps.dns import DnsCutover

    original = bind.axfr()
    eng = engine(dns_runbook(tmp_path / "rb", zone))
    eng.run(step_ids=["dns-lower-ttl"])
    assert answers(bind, bind.secondary)["rentguy"] == (low, ["127.0.0.10"])
    facts = eng.state.steps["dns-lower-ttl"].facts
    assert facts["old"]["rentguy.sevensa.test.|A"] == {"ttl": 3600, "rdatas": ["127.0.0.10"]}
    assert facts["old"]["rentguy.sevensa.test.|AAAA"] is None
    assert facts["lowered_at"] <= time.time()
    wait_lower_ttl_passed()

    # The secondary stops answering: the gate names it, and passes once it is back.
    seen: list[str] = []
    real_verify = DnsCutover.verify

    def spy(self: DnsCutover) -> None:
        try:
            real_verify(self)
        except GateNotReady as exc:
            seen.append(str(exc))
            raise

    monkeypatch.setattr(DnsCutover, "verify", spy)
    def wake_when_reported() -> None:  # the engine must own the main thread (signal handlers)
        deadline = time.monotonic() + 15
        while not seen and time.monotonic() < deadline:
            time.sleep(0.1)
        bind.resume(bind.secondary)

    bind.pause(bind.secondary)
    waker = threading.Thread(target=wake_when_reported)
    waker.start()
    try:
        eng.run(step_ids=["dns-cutover"])
    finally:
        waker.join(20)
        bind.resume(bind.secondary)
    assert seen and f"ns2.sevensa.test. (127.0.0.1:{bind.secondary.port})" in seen[0]
    assert "ns1" not in seen[0]
    assert eng.state.steps["dns-cutover"].status == "succeeded", eng.state.steps["dns-cutover"].error
    for server in (bind.primary, bind.secondary):
        assert answers(bind, server) == {n: (low, [NEW]) for n in NAMES}
    cut = eng.state.steps["dns-cutover"].facts
    assert cut["old_sets"]["psra.sevensa.test.|A"] == {"name": "psra.sevensa.test.", "type": "A", "ttl": low,
                                                      "rdatas": ["127.0.0.10"]}
    report = eng.state.steps["dns-cutover"].report
    assert report["resolvers_still_caching"] == {} and len(report["authoritative_servers"]) == 2

    eng.run(step_ids=["dns-restore-ttl"])
    assert answers(bind, bind.secondary) == {n: (3600, [NEW]) for n in NAMES}

    # Undo it all, last step first: the zone is exactly what it was.
    for step in ("dns-restore-ttl", "dns-cutover", "dns-lower-ttl"):
        eng.rollback(step_id=step)
    assert bind.axfr() == original
    bind.wait_in_sync()
    assert bind.axfr(bind.secondary) == original


def test_plan_shows_old_and_new_and_the_wait(tmp_path: Path, zone: ProviderZone) -> None:
    low = zone.low_ttl
    eng = engine(dns_runbook(tmp_path / "rb", zone, wait_override=None))
    eng.run(step_ids=["dns-lower-ttl"])
    plan = engine(eng.runbook.path, dry_run=True)
    out = plan.plan(step_ids=["dns-cutover"])[0]
    assert f"rentguy.sevensa.test. A: {low} A 127.0.0.10 -> {low} A 127.0.0.20" in out["changes"]
    assert re.match(r"TTL wait: 3[56]\d\ds left", out["waits"][0]) and "old TTL 3600s" in out["waits"][0]


def test_cutover_refuses_until_the_old_ttl_has_passed(tmp_path: Path, zone: ProviderZone) -> None:
    bind = zone.bind
    from tests.util import migrate

    rb = dns_runbook(tmp_path / "rb", zone, ttl=60, wait_override=None)
    args = ["--runbook", str(rb), "--state-dir", str(tmp_path / "state")]
    assert migrate("run", *args, "--step", "dns-lower-ttl").returncode == 0
    before = bind.axfr(without_serial=False)
    proc = migrate("run", *args, "--step", "dns-cutover", "--yes")
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("FAILED: dns-cutover: refusing to flip before the old TTL has passed: TTL wait: 3")
    assert "old TTL 3600s" in line and "Traceback" not in proc.stderr
    assert bind.axfr(without_serial=False) == before


def test_cutover_waits_out_a_short_remaining_ttl_then_flips(tmp_path: Path, zone: ProviderZone) -> None:
    bind = zone.bind
    from tests.util import migrate

    rb = dns_runbook(tmp_path / "rb", zone, ttl=60, wait_override=2)
    args = ["--runbook", str(rb), "--state-dir", str(tmp_path / "state")]
    assert migrate("run", *args, "--step", "dns-lower-ttl").returncode == 0
    started = time.monotonic()
    proc = migrate("run", *args, "--step", "dns-cutover")  # right away: about 2 s of the wait are left
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started >= 1.0  # it waited rather than flipping early
    flipped = [ips for _, ips in answers(bind).values() if ips]
    assert flipped and all(ips == [NEW] for ips in flipped)


def test_wrong_credential_one_clear_line_and_nothing_changes(tmp_path: Path, zone: ProviderZone) -> None:
    from tests.util import migrate

    bind = zone.bind
    wrong = zone.wrong_credential()
    rb = dns_runbook(tmp_path / "rb", zone, key=wrong)
    before = bind.axfr(without_serial=False)
    proc = migrate("run", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"), "--step", "dns-lower-ttl")
    assert proc.returncode == 1
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1
    if zone.provider == "rfc2136":
        expected = (f"TSIG key migrator-key rejected by primary (127.0.0.1:{bind.primary.port}) (BADSIG): "
                    "check environment.dns.tsig")
    else:
        why = "401: Provided signature is not valid" if zone.provider == "transip" else "403: Authentication error"
        expected = (f"{zone.provider} API at {zone.api_url} rejected the credentials (HTTP {why}): check "
                    f"environment.dns.{zone.provider} and its secret")
    assert expected in failed[0]
    assert "Traceback" not in proc.stderr
    assert all(line not in proc.stderr + proc.stdout for line in wrong.splitlines() if len(line) > 20)
    assert bind.axfr(without_serial=False) == before


def test_record_changed_between_check_and_apply_is_not_overwritten(tmp_path: Path, zone: ProviderZone,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bind, low = zone.bind, zone.low_ttl
    provider = zone.provider_class()
    eng = engine(dns_runbook(tmp_path / "rb", zone))
    eng.run(step_ids=["dns-lower-ttl"])
    wait_lower_ttl_passed()
    real_apply = provider.apply

    def someone_else_first(self: Any, changes: Any) -> None:
        bind.update(("rentguy", "A", 300, ["127.0.0.99"]))  # lands after check() read the records
        real_apply(self, changes)

    monkeypatch.setattr(provider, "apply", someone_else_first)
    with pytest.raises(PermanentError) as err:
        eng.run(step_ids=["dns-cutover"])
    assert f"rentguy.sevensa.test. A: expected {low} A 127.0.0.10, found 300 A 127.0.0.99" in str(err.value)
    assert "nothing was overwritten" in str(err.value)
    assert bind.query("rentguy") == (300, ["127.0.0.99"])
    assert bind.query("psra") == (low, ["127.0.0.10"])  # the one update was refused whole
    assert eng.state.steps["dns-cutover"].facts["old_sets"] == {}
    # Nothing was written, so the rollback has nothing to undo (and leaves the other's change alone).
    monkeypatch.setattr(provider, "apply", real_apply)
    eng.rollback(step_id="dns-cutover")
    assert bind.query("rentguy") == (300, ["127.0.0.99"])


def test_record_changed_before_the_step_is_detected(tmp_path: Path, zone: ProviderZone) -> None:
    bind = zone.bind
    eng = engine(dns_runbook(tmp_path / "rb", zone))
    eng.run(step_ids=["dns-lower-ttl"])
    wait_lower_ttl_passed()
    bind.update(("api.rentguy", "A", 2, ["127.0.0.77"]))
    before = bind.axfr(without_serial=False)
    with pytest.raises(PermanentError) as err:
        eng.run(step_ids=["dns-cutover"])
    assert "api.rentguy.sevensa.test. A: was 127.0.0.10 at lower-ttl, now 2 A 127.0.0.77" in str(err.value)
    assert bind.axfr(without_serial=False) == before


def test_rollback_refuses_when_someone_changed_the_flipped_record(tmp_path: Path, zone: ProviderZone) -> None:
    bind, low = zone.bind, zone.low_ttl
    eng = engine(dns_runbook(tmp_path / "rb", zone))
    eng.run(step_ids=["dns-lower-ttl"])
    wait_lower_ttl_passed()
    eng.run(step_ids=["dns-cutover"])
    bind.update(("psra", "A", 2, ["127.0.0.55"]))
    before = bind.axfr(without_serial=False)
    with pytest.raises(PermanentError) as err:
        eng.rollback(step_id="dns-cutover")
    assert f"psra.sevensa.test. A is now 2 A 127.0.0.55, not what dns-cutover wrote ({low} A 127.0.0.20)" in str(err.value)
    assert bind.axfr(without_serial=False) == before


def test_cname_target_and_back(tmp_path: Path, zone: ProviderZone) -> None:
    bind = zone.bind
    original = bind.axfr()
    eng = engine(dns_runbook(tmp_path / "rb", zone, records=["wpcs"], target="ingress.k8s.example."))
    eng.run(step_ids=["dns-lower-ttl"])
    wait_lower_ttl_passed()
    eng.run(step_ids=["dns-cutover"])
    assert bind.query("wpcs", "CNAME", server=bind.secondary) == (zone.low_ttl, ["ingress.k8s.example."])
    assert bind.query("wpcs", "A", server=bind.secondary) == (0, [])
    eng.rollback(step_id="dns-cutover")
    eng.rollback(step_id="dns-lower-ttl")
    assert bind.axfr() == original


def test_crash_after_update_resume_once_then_rollback_from_a_fresh_process(tmp_path: Path, zone: ProviderZone) -> None:
    """SIGKILL right after the update, before the state write: resume updates nothing twice; a fresh
    process then rolls back to exactly the zone before the cutover. The credential shows up nowhere."""
    bind, low = zone.bind, zone.low_ttl
    from tests.util import migrate, status_json

    original = bind.axfr()
    rb = dns_runbook(tmp_path / "rb", zone)
    state = tmp_path / "state"
    args = ["--runbook", str(rb), "--state-dir", str(state)]
    outputs: list[str] = []

    def cli(*more: str, env: dict[str, str] | None = None) -> Any:
        proc = migrate("--log-format", "json", "--log-level", "debug", *more, *args, env=env)
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    assert cli("run", "--step", "dns-lower-ttl").returncode == 0
    wait_lower_ttl_passed()
    before_cutover = bind.axfr()
    serial, updates = bind.soa_serial(), bind.updates_applied()

    crashed = cli("run", "--step", "dns-cutover", env={"MIGRATE_FAILPOINTS": "dns-cutover:after-update=crash"})
    assert crashed.returncode == -9, crashed.stderr
    assert status_json(rb, state)["steps"][1]["status"] == "running"
    assert bind.query("rentguy") == (low, [NEW])
    after_crash = bind.soa_serial()
    if zone.provider == "rfc2136":
        assert after_crash == serial + 1  # one update message

    resumed = cli("resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "already in place" in resumed.stdout
    assert bind.soa_serial() == after_crash  # the resume wrote nothing
    if zone.provider == "rfc2136":
        assert bind.updates_applied() == updates + 1  # exactly one update
    assert answers(bind, bind.secondary) == {n: (low, [NEW]) for n in NAMES}

    plan = cli("rollback", "--step", "dns-cutover", "--dry-run")
    assert f"rentguy.sevensa.test. A: {low} A 127.0.0.20 -> {low} A 127.0.0.10" in plan.stdout, plan.stdout + plan.stderr
    rolled = cli("rollback", "--step", "dns-cutover")
    assert rolled.returncode == 0, rolled.stderr
    assert bind.axfr() == before_cutover
    bind.wait_in_sync()
    assert bind.axfr(bind.secondary) == before_cutover
    assert cli("rollback", "--step", "dns-lower-ttl").returncode == 0
    assert bind.axfr() == original

    # Canaries: the TSIG key, the TransIP private key (a line of its PEM), the Cloudflare token.
    canaries = [bind.key_secret] + [line for line in zone.credential.splitlines() if len(line) > 40][:1]
    canaries += [zone.credential] if zone.provider == "cloudflare" else []
    for key in canaries:
        for path in state.rglob("*"):
            if path.is_file():
                assert key not in path.read_text(errors="replace"), path
        assert all(key not in out for out in outputs)
