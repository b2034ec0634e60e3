"""keycloak.migrate and keycloak.verify against the sandbox's Keycloak stand-in on a real PostgreSQL."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import PermanentError
from tests.keycloak.conftest import ADMIN_PASSWORD, SMOKE_SECRET, KeycloakPair
from tests.util import engine, write_runbook

SMOKE = {"realm": "sevensa", "client_id": "migrator-smoke", "client_secret": "${secrets.kc_smoke}"}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KC_ADMIN", ADMIN_PASSWORD)
    monkeypatch.setenv("T_KC_SMOKE", SMOKE_SECRET)


def issuer(url: str, realm: str = "sevensa") -> str:
    with urllib.request.urlopen(f"{url}/realms/{realm}/.well-known/openid-configuration", timeout=5) as r:  # noqa: S310
        return str(json.loads(r.read())["issuer"])


def steps(kc: KeycloakPair, **migrate_with: Any) -> list[dict[str, Any]]:
    pg = f"-h 127.0.0.1 -p {kc.pg.port} -U postgres"
    return [
        {"id": "freeze", "uses": "shell.run", "with": {"command": "true"}},  # stands for compose.freeze
        {"id": "kc-db", "uses": "shell.run",  # stands for postgres.copy
         "with": {"command": f"pg_dump {pg} -d {kc.src_db} | psql -q -X {pg} -d {kc.tgt_db}"}},
        {"id": "kc", "uses": "keycloak.migrate", "needs": ["freeze", "kc-db"], "gate": {"timeout": 10, "interval": 0.2},
         "with": {"freeze_step": "freeze", "database_step": "kc-db", "hostname": "auth.new.test",
                  "issuer_scheme": "http", "test_client": SMOKE,
                  "set_hostname": {"via": "env-file", "path": str(kc.target.env_file),
                                   "restart": ["kill", "-HUP", str(kc.target.proc.pid)]}, **migrate_with}},
        {"id": "kc-check", "uses": "keycloak.verify", "needs": ["kc"], "gate": {"timeout": 5, "interval": 0.2},
         "with": {"issuer_base": "http://auth.new.test", "counts_from": "kc", "test_client": SMOKE}},
    ]


def runbook(directory: Path, kc: KeycloakPair, step_list: list[dict[str, Any]]) -> Path:
    env = {"keycloak": {"source": {"url": kc.source.url, "admin_password": "kc_admin"},
                        "target": {"url": kc.target.url, "admin_password": "kc_admin"}}}
    return write_runbook(directory, {1: step_list}, name="kc", environment=env,
                         secrets={"kc_admin": {"env": "T_KC_ADMIN"}, "kc_smoke": {"env": "T_KC_SMOKE"}})


def test_migrate_gives_parity_then_rolls_back(keycloaks: KeycloakPair, tmp_path: Path) -> None:
    kc = keycloaks
    rb = runbook(tmp_path / "rb", kc, steps(kc))
    eng = engine(rb)
    assert eng.run() == 4
    assert issuer(kc.target.url) == "http://auth.new.test/realms/sevensa"
    assert issuer(kc.source.url) == "http://auth.old.test/realms/sevensa"
    assert "KC_HOSTNAME=auth.new.test" in kc.target.env_file.read_text()
    facts = eng.state.steps["kc"].facts
    assert facts["source_counts"]["sevensa"]["users"] == 200 and facts["previous_hostname"] == "auth.old.test"
    assert facts["source_issuers"]["sevensa"] == "http://auth.old.test/realms/sevensa"

    eng = engine(rb)
    assert eng.rollback(step_id="kc", cascade=True) == 2
    text = kc.target.env_file.read_text()
    assert "KC_HOSTNAME=auth.old.test" in text and "KC_DB_URL_DATABASE" in text
    engine(runbook(tmp_path / "rb-wait", kc, [{"id": "up", "uses": "check.http", "gate": {"timeout": 10},
                                                "with": {"url": f"{kc.target.url}/health"}}])).run()
    assert issuer(kc.target.url) == "http://auth.old.test/realms/sevensa"

    for path in (tmp_path / "rb" / "state").iterdir():
        data = path.read_bytes()
        assert ADMIN_PASSWORD.encode() not in data and SMOKE_SECRET.encode() not in data, path
    assert not any(ADMIN_PASSWORD in line or SMOKE_SECRET in line for line in eng.said)


def test_gate_fails_when_the_issuer_is_still_the_old_hostname(keycloaks: KeycloakPair, tmp_path: Path) -> None:
    kc = keycloaks
    all_steps = steps(kc)
    verify = {**all_steps[3], "needs": ["kc-db"], "gate": {"timeout": 1, "interval": 0.2},
              "with": {**all_steps[3]["with"], "counts_from": None}}  # counts read live from the source
    rb = runbook(tmp_path / "rb", kc, [*all_steps[:2], verify])
    with pytest.raises(PermanentError) as err:
        engine(rb).run()
    assert ("realm sevensa: the issuer is still the old hostname (http://auth.old.test/realms/sevensa); "
            "expected http://auth.new.test/realms/sevensa") in str(err.value)


def test_gate_lists_count_differences(keycloaks: KeycloakPair, tmp_path: Path) -> None:
    kc = keycloaks
    engine(runbook(tmp_path / "rb", kc, steps(kc)[:3])).run()
    kc.pg.psql(kc.tgt_db, "UPDATE user_entity SET realm_id = (SELECT id FROM realm WHERE name = 'master') "
                          "WHERE username = (SELECT min(username) FROM user_entity WHERE username <> 'admin');")
    check = {**steps(kc)[3], "needs": [], "with": {**steps(kc)[3]["with"], "counts_from": None}}
    with pytest.raises(PermanentError) as err:
        engine(runbook(tmp_path / "rb2", kc, [check])).run()
    assert "realm sevensa: users 199 on the target, 200 on the source" in str(err.value)
    assert "realm master: users 2 on the target, 1 on the source" in str(err.value)


def test_refuses_without_the_database_step_in_needs(keycloaks: KeycloakPair, tmp_path: Path) -> None:
    kc = keycloaks
    s = steps(kc)
    s[2] = {**s[2], "needs": ["freeze"]}
    with pytest.raises(PermanentError) as err:
        engine(runbook(tmp_path / "rb", kc, s[:3])).run()
    assert "add kc-db to `needs:`" in str(err.value)
    assert "KC_HOSTNAME=auth.old.test" in kc.target.env_file.read_text()


def test_admin_token_is_renewed_when_the_server_no_longer_accepts_it(keycloaks: KeycloakPair) -> None:
    """A run keeps its admin client for hours, while Keycloak's admin tokens live 60 s and a restarted
    server (the VPS's, thawed after phase 2) does not know the old one: a 401 logs in again, once."""
    import signal
    import time

    from migrator.adapters.keycloak import KeycloakClient
    from migrator.runbook.environment import KeycloakEndpoint

    client = KeycloakClient(KeycloakEndpoint(url=keycloaks.source.url), ADMIN_PASSWORD)
    try:
        before = client.counts("sevensa")
        old = client._token
        keycloaks.source.proc.send_signal(signal.SIGHUP)  # the stand-in restarts: new keys, old tokens void
        time.sleep(0.5)
        keycloaks.source.wait()
        assert client.counts("sevensa") == before
        assert client._token != old
    finally:
        client.close()
