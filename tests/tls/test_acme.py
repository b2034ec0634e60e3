"""Traefik v2 acme.json as data: certificates checked as they are read, the best one picked per host set."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from migrator.adapters.acme import best_for, parse
from migrator.errors import PermanentError
from migrator.sandbox.ca import CA, Issued


def entry(issued: Issued, main: str, sans: list[str], key: bytes | None = None) -> dict[str, object]:
    return {"domain": {"main": main, "sans": sans}, "certificate": base64.b64encode(issued.cert_pem).decode(),
            "key": base64.b64encode(key or issued.key_pem).decode(), "Store": "default"}


def acme(**resolvers: list[dict[str, object]]) -> bytes:
    return json.dumps({r: {"Account": {"Email": "ops@sevensa.test"}, "Certificates": c}
                       for r, c in resolvers.items()}).encode()


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create("acme test CA")


def test_parse_checks_and_describes(ca: CA) -> None:
    rent = ca.issue(["rentguy.sevensa.test", "api.rentguy.sevensa.test"], days=60)
    wild = ca.issue(["*.psra.sevensa.test"], days=80)
    certs = parse(acme(le=[entry(rent, "rentguy.sevensa.test", ["api.rentguy.sevensa.test"])],
                       other=[entry(wild, "*.psra.sevensa.test", [])]), "vps:/letsencrypt/acme.json")
    assert [(c.resolver, c.main) for c in certs] == [("le", "rentguy.sevensa.test"), ("other", "*.psra.sevensa.test")]
    rentguy, psra = certs
    assert rentguy.chain_pem == rent.cert_pem and rentguy.key_pem == rent.key_pem
    assert rentguy.covers("API.rentguy.sevensa.test.") and not rentguy.covers("psra.sevensa.test")
    assert psra.covers("api.psra.sevensa.test") and not psra.covers("a.b.psra.sevensa.test")
    assert not psra.covers("psra.sevensa.test")
    assert 59 <= (rentguy.not_after - dt.datetime.now(dt.UTC)).days <= 60
    only = parse(acme(le=[entry(rent, "rentguy.sevensa.test", [])], other=[]), "f", resolver="le")
    assert len(only) == 1 and only[0].resolver == "le"


def test_best_for_takes_the_one_expiring_last(ca: CA) -> None:
    old = ca.issue(["rentguy.sevensa.test"], days=10)
    new = ca.issue(["rentguy.sevensa.test"], days=85)
    certs = parse(acme(le=[entry(old, "rentguy.sevensa.test", []), entry(new, "rentguy.sevensa.test", [])]), "f")
    best = best_for(certs, ["rentguy.sevensa.test"])
    assert best is not None and best.chain_pem == new.cert_pem
    assert best_for(certs, ["rentguy.sevensa.test", "psra.sevensa.test"]) is None


@pytest.mark.parametrize(("mangle", "why"), [
    (lambda e, other: {**e, "key": base64.b64encode(other.key_pem).decode()}, "the key does not belong to the certificate"),
    (lambda e, other: {**e, "domain": {"main": "rentguy.sevensa.test", "sans": ["evil.sevensa.test"]}},
     "the certificate does not name evil.sevensa.test"),
    (lambda e, other: {**e, "certificate": "not base64!"}, "certificate: not base64"),
    (lambda e, other: {**e, "certificate": base64.b64encode(b"junk").decode()}, "the certificate is not a PEM chain"),
    (lambda e, other: {**e, "key": ""}, "key: missing"),
])
def test_a_bad_entry_is_named_without_key_material(ca: CA, mangle: object, why: str) -> None:
    good, other = ca.issue(["rentguy.sevensa.test"]), ca.issue(["x.sevensa.test"])
    bad = mangle(entry(good, "rentguy.sevensa.test", []), other)  # type: ignore[operator]
    with pytest.raises(PermanentError) as err:
        parse(acme(le=[bad]), "vps:/acme.json")
    message = str(err.value)
    assert message.startswith("vps:/acme.json: resolver le, certificate 1 (rentguy.sevensa.test): ") and why in message
    assert "PRIVATE KEY" not in message and good.key_pem.decode().splitlines()[1] not in message


def test_not_an_acme_file(ca: CA) -> None:
    with pytest.raises(PermanentError, match="f: not JSON"):
        parse(b"{", "f")
    with pytest.raises(PermanentError, match="no resolver 'le' \\(found: other\\)"):
        parse(acme(other=[]), "f", resolver="le")
