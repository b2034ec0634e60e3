"""The rollback drill: after a full rehearsal, `migrate rollback --phase 5` gives the platform back to
the VPS, the old endpoints answer and the data is intact; running phase 5 again converges."""

from __future__ import annotations

import http.client

import dns.message
import dns.query

from tests.e2e.conftest import Rehearsal
from tests.util import migrate


def ask(name: str, port: int) -> list[str]:
    resp = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)
    return sorted(r.to_text() for rrset in resp.answer for r in rrset)


def get(host: str, path: str = "/health") -> int:
    conn = http.client.HTTPConnection("127.0.0.10", 18080, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


def test_rollback_phase_5_returns_the_platform_to_the_vps(rehearsed: Rehearsal) -> None:
    from migrator.sandbox import snapshot

    proc = migrate("rollback", "--phase", "5", *rehearsed.args(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    status = rehearsed.status()
    phase5 = [s for s in status if s in ("freeze-writers", "dns-cutover", "decommission", "catchup-rentguy")]
    assert all(status[s] == "rolled_back" for s in phase5)
    # DNS back at the VPS, on both authoritative servers.
    for port in (15353, 15354):
        for name in ("rentguy.sevensa.test", "api.rentguy.sevensa.test", "auth.sevensa.test"):
            assert ask(name, port) == ["127.0.0.10"], (name, port)
    # The Compose stack runs again and the old endpoints answer.
    now = snapshot.take()
    assert now["vps"] == rehearsed.before["vps"]
    for host in ("rentguy.sevensa.test", "api.rentguy.sevensa.test", "api.psra.sevensa.test", "wpcs.sevensa.test"):
        assert get(host) == 200, host
    # The data is intact: the target still holds every row that was copied, and replication from the VPS
    # runs again (the catchup was undone), ready for the next cutover.
    for name in ("rentguy", "psra", "wpcs"):
        tables = {k: v for k, v in now["databases"][name].items() if not k.startswith("_")}
        assert tables == {k: v for k, v in rehearsed.reference["databases"][name].items() if not k.startswith("_")}
        assert now["databases"][name]["_subscriptions"] == [f"migrator_{name}"]
    assert now["uploads"] == rehearsed.reference["uploads"]

    again = migrate("run", "--approve", "go-no-go", *rehearsed.args(), timeout=900)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert snapshot.differences(rehearsed.reference, snapshot.take()) == []
