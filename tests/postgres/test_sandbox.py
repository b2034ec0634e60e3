"""The real path: source databases inside their containers on the sandbox "VPS" (SSH + docker exec, no
port opened), targets on the host's stand-in StatefulSet servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migrator.sandbox import envfile
from tests.util import engine, write_runbook

pytestmark = pytest.mark.sandbox


def _env(info: Any) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    f = info.facts
    ssh = f["ssh"]
    environment = {
        "source": {"ssh": {"host": ssh["host"], "port": ssh["port"], "user": ssh["user"], "key_file": ssh["key"],
                           "known_hosts": ssh["known_hosts"]},
                   "address": f["dns"]["vps_address"], "compose_project": f["compose"]["project"]},
        "target": {"ingress_address": f["dns"]["ingress_address"], "data_access": "endpoint",
                   "endpoints": {f"{t['name']}-db": {"host": t["host"], "port": t["port"]}
                                 for t in f["target_databases"]}},
    }
    values = envfile.read(Path(f["env_file"]))
    sources = {s["name"]: s for s in f["source_databases"]}
    return environment, values, sources


def _params(src: dict[str, Any], target_db: str, superuser: str) -> dict[str, Any]:
    return {"source": {"container": src["service"], "database": src["db"], "user": src["user"],
                       "password": f"${{secrets.{src['name']}}}"},
            "target": {"endpoint": f"{src['name']}-db", "database": target_db, "user": superuser,
                       "password": "${secrets.target}"}}


def test_copy_and_replicate_through_ssh_and_docker_exec(sandbox: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    environment, values, sources = _env(sandbox)
    superuser = sandbox.facts["target_databases"][0]["superuser"]
    secrets = {"target": {"env": "MIG_TARGET_PG"}}
    monkeypatch.setenv("MIG_TARGET_PG", values["TARGET_PG_PASSWORD"])
    for name in ("rentguy", "psra"):
        monkeypatch.setenv(f"MIG_{name.upper()}", values[sources[name]["password_env"]])
        secrets[name] = {"env": f"MIG_{name.upper()}"}
    rg, ps = sources["rentguy"], sources["psra"]
    rb = write_runbook(tmp_path, {
        1: [{"id": "copy-rentguy", "uses": "postgres.copy",
             "with": {**_params(rg, "rentguy_copy", superuser), "owner_map": {rg["user"]: rg["user"]}}},
            {"id": "verify-rentguy", "uses": "postgres.verify", "needs": ["copy-rentguy"],
             "with": _params(rg, "rentguy_copy", superuser)},
            {"id": "replicate-psra", "uses": "postgres.replicate",
             "with": {**_params(ps, "psra_repl", superuser), "owner_map": {ps["user"]: ps["user"]}},
             "gate": {"timeout": 120, "interval": 0.5}}],
        2: [{"id": "catchup-psra", "uses": "postgres.catchup", "with": {"replicate": "replicate-psra"}},
            {"id": "verify-psra", "uses": "postgres.verify", "needs": ["catchup-psra"],
             "with": _params(ps, "psra_repl", superuser)}],
    }, environment=environment, secrets=secrets)
    eng = engine(rb)
    try:
        eng.run()
        assert eng.state.steps["copy-rentguy"].report["rows"] > 0
        assert eng.state.steps["verify-psra"].status == "succeeded"
    finally:
        engine(rb).rollback(phase=1, cascade=True)
