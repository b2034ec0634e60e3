"""BIND: both name servers answer the zone; TSIG-signed updates land (and reach ns2); unsigned are refused."""

from __future__ import annotations

import secrets
import time

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update
import pytest

from migrator.sandbox import bind
from migrator.sandbox.platform import SandboxInfo

from .helpers import paths_of

pytestmark = pytest.mark.sandbox


def _ask(server: dict[str, object], name: str, rtype: str) -> dns.message.Message:
    q = dns.message.make_query(name, rtype)
    return dns.query.udp(q, str(server["host"]), port=int(str(server["port"])), timeout=2)


def _a(server: dict[str, object], name: str) -> tuple[list[str], int]:
    r = _ask(server, name, "A")
    for rrset in r.answer:
        return sorted(rd.address for rd in rrset), rrset.ttl
    return [], 0


def test_both_servers_answer_the_zone(sandbox: SandboxInfo) -> None:
    d = sandbox.facts["dns"]
    for server in (d["primary"], d["secondary"]):
        for host in ("rentguy", "api.rentguy", "psra", "wpcs", "n8n", "chat", "trading", "langgraph", "auth",
                     "vault", "grafana", "prometheus"):
            assert _a(server, f"{host}.{d['zone']}.") == (["127.0.0.10"], 3600), (server, host)
        r = _ask(server, f"{d['zone']}.", "NS")
        assert r.flags & dns.flags.AA
        ns = sorted(str(rd.target) for rrset in r.answer for rd in rrset)
        assert ns == [f"ns1.{d['zone']}.", f"ns2.{d['zone']}."]
        assert _a(server, f"ns1.{d['zone']}.")[0] == ["127.0.0.1"]
        assert _a(server, f"ns2.{d['zone']}.")[0] == ["127.0.0.2"]


def test_signed_update_lands_and_reaches_the_secondary(sandbox: SandboxInfo) -> None:
    d = sandbox.facts["dns"]
    ring = bind.keyring(paths_of(sandbox))
    name = f"probe-{secrets.token_hex(4)}"
    before = bind.soa_serial(d["primary"]["host"], d["primary"]["port"])
    upd = dns.update.UpdateMessage(d["zone"], keyring=ring, keyname=d["tsig_key_name"],
                                   keyalgorithm=dns.tsig.HMAC_SHA256)
    upd.replace(name, 300, "A", "127.0.0.20")
    resp = dns.query.tcp(upd, d["primary"]["host"], port=d["primary"]["port"], timeout=5)
    assert resp.rcode() == dns.rcode.NOERROR
    assert _a(d["primary"], f"{name}.{d['zone']}.") == (["127.0.0.20"], 300)
    after = bind.soa_serial(d["primary"]["host"], d["primary"]["port"])
    assert before is not None and after == before + 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _a(d["secondary"], f"{name}.{d['zone']}.")[0] != ["127.0.0.20"]:
        time.sleep(0.1)
    assert _a(d["secondary"], f"{name}.{d['zone']}.") == (["127.0.0.20"], 300)
    cleanup = dns.update.UpdateMessage(d["zone"], keyring=ring, keyname=d["tsig_key_name"],
                                       keyalgorithm=dns.tsig.HMAC_SHA256)
    cleanup.delete(name)
    assert dns.query.tcp(cleanup, d["primary"]["host"], port=d["primary"]["port"], timeout=5).rcode() == 0


def test_unsigned_update_is_refused(sandbox: SandboxInfo) -> None:
    d = sandbox.facts["dns"]
    upd = dns.update.UpdateMessage(d["zone"])
    upd.replace("rentguy", 60, "A", "127.0.0.99")
    resp = dns.query.tcp(upd, d["primary"]["host"], port=d["primary"]["port"], timeout=5)
    assert resp.rcode() == dns.rcode.REFUSED
    assert _a(d["primary"], f"rentguy.{d['zone']}.") == (["127.0.0.10"], 3600)


def test_update_with_a_wrong_key_is_rejected(sandbox: SandboxInfo) -> None:
    d = sandbox.facts["dns"]
    wrong = {dns.name.from_text(d["tsig_key_name"]): dns.tsig.Key(d["tsig_key_name"], "c2VjcmV0c2VjcmV0c2VjcmV0",
                                                                  dns.tsig.HMAC_SHA256)}
    upd = dns.update.UpdateMessage(d["zone"], keyring=wrong, keyname=d["tsig_key_name"],
                                   keyalgorithm=dns.tsig.HMAC_SHA256)
    upd.replace("rentguy", 60, "A", "127.0.0.99")
    with pytest.raises((dns.tsig.PeerBadSignature, dns.tsig.PeerError)):
        dns.query.tcp(upd, d["primary"]["host"], port=d["primary"]["port"], timeout=5)
    assert _a(d["primary"], f"rentguy.{d['zone']}.") == (["127.0.0.10"], 3600)
