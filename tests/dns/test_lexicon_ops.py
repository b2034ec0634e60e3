"""The order of an HTTP provider's record writes: a cutover never leaves a name without an answer where the
API allows it (the new record before the old one goes), and a CNAME never shares its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.adapters.dns import Change, RRSet
from migrator.adapters.dns_lexicon import LexiconProvider, Op
from migrator.runbook.environment import DNSConfig

NAME = "rentguy.sevensa.test."


def provider(name: str) -> LexiconProvider:
    section = {"transip": {"username": "u", "private_key": "k"}} if name == "transip" else {"cloudflare": {"token": "t"}}
    config = DNSConfig.model_validate({"provider": name, "zone": "sevensa.test", **section})
    return LexiconProvider(config, lambda _n: "unused", Path)


def a(ttl: int, *ips: str) -> RRSet:
    return RRSet.make(NAME, "A", ttl, list(ips))


@pytest.mark.parametrize("name", ["transip", "cloudflare"])
def test_cutover_creates_the_new_address_before_deleting_the_old(name: str) -> None:
    old, new = a(60, "127.0.0.10"), a(60, "127.0.0.20")
    ops = provider(name)._operations([Change(NAME, "A", old, new)], {f"{NAME}|A": old})
    assert ops == [Op("create", NAME, "A", "127.0.0.20", 60), Op("delete", NAME, "A", "127.0.0.10", 60)]


def test_a_ttl_change_in_place_at_cloudflare_by_delete_and_create_at_transip() -> None:
    old, new = a(3600, "127.0.0.10"), a(60, "127.0.0.10")
    key = {f"{NAME}|A": old}
    assert provider("cloudflare")._operations([Change(NAME, "A", old, new)], key) == [
        Op("retime", NAME, "A", "127.0.0.10", 60, 3600)]
    assert provider("transip")._operations([Change(NAME, "A", old, new)], key) == [
        Op("delete", NAME, "A", "127.0.0.10", 3600), Op("create", NAME, "A", "127.0.0.10", 60)]


@pytest.mark.parametrize("name", ["transip", "cloudflare"])
def test_addresses_to_a_cname_delete_first(name: str) -> None:
    old = a(60, "127.0.0.10")
    cname = RRSet.make(NAME, "CNAME", 60, ["ingress.k8s.example."])
    changes = [Change(NAME, "A", old, None), Change(NAME, "CNAME", None, cname)]
    ops = provider(name)._operations(changes, {f"{NAME}|A": old, f"{NAME}|CNAME": None})
    assert ops == [Op("delete", NAME, "A", "127.0.0.10", 60), Op("create", NAME, "CNAME", "ingress.k8s.example.", 60)]


def test_undo_is_the_inverse_in_reverse() -> None:
    assert Op("retime", NAME, "A", "127.0.0.10", 60, 3600).inverse() == Op("retime", NAME, "A", "127.0.0.10", 3600, 60)
    assert Op("create", NAME, "A", "127.0.0.10", 60).inverse() == Op("delete", NAME, "A", "127.0.0.10", 60)
    assert Op("delete", NAME, "A", "127.0.0.10", 60).inverse() == Op("create", NAME, "A", "127.0.0.10", 60)
