"""inspect and volume.copy against the real sandbox platform (read-only on its VPS side)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from migrator.sandbox.envfile import NOT_SECRET
from tests.util import migrate, write_runbook

pytestmark = pytest.mark.sandbox


def _environment(info: Any, pvc: Path) -> dict[str, Any]:
    d = info.to_dict()
    ssh = d["ssh"]
    return {
        "source": {"ssh": {"host": ssh["host"], "port": ssh["port"], "user": ssh["user"], "key_file": ssh["key"],
                           "known_hosts": ssh["known_hosts"], "config_file": str(pvc / "no-ssh-config")},
                   "address": d["dns"]["vps_address"], "compose_project": d["compose"]["project"]},
        "target": {"ingress_address": "127.0.0.1", "data_access": "endpoint",
                   "volume_paths": {"wpcs-uploads": str(pvc / "wpcs-uploads")}},
    }


def _secret_values(env_file: Path) -> list[str]:
    values = []
    for line in env_file.read_text().splitlines():
        if "=" in line and not line.startswith("#") and line.split("=", 1)[0].strip() not in NOT_SECRET:
            value = line.split("=", 1)[1].strip().strip("'\"")
            if len(value) >= 8:
                values.append(value)
    return values


def test_inspect_sandbox(sandbox: Any, tmp_path: Path) -> None:
    rb = write_runbook(tmp_path, {1: [{"id": "inventory", "uses": "compose.inspect"}]},
                       environment=_environment(sandbox, tmp_path))
    proc = migrate("inspect", "--json", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"))
    # The runbook moves nothing, so the coverage gate refuses it (exit 2) and names every database; the
    # inventory is printed all the same.
    assert proc.returncode == 2, proc.stderr
    for db in sandbox.to_dict()["source_databases"]:
        assert f"not moved by any step nor excluded: database {db['service']}/{db['db']}" in proc.stderr
    inv = json.loads(proc.stdout)
    expected = set(sandbox.to_dict()["compose"]["services"])
    assert set(inv["projects"]["sevensa"]["services"]) == expected
    found = {db["service"]: {d["name"] for d in db.get("databases", [])} for db in inv["databases"]}
    for db in sandbox.to_dict()["source_databases"]:
        assert db["db"] in found[db["service"]], (db, found)
    versions = {db["kind"]: db["version"] for db in inv["databases"]}
    assert versions["postgres"].startswith("15") and versions["mysql"] and versions["redis"][0].isdigit(), versions
    assert [x["service"] for x in inv["openbao"]] == ["openbao"]
    assert "keycloak" in [x["service"] for x in inv["keycloak"]]
    for value in _secret_values(Path(sandbox.to_dict()["env_file"])):
        assert value not in proc.stdout
    table = migrate("inspect", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"))
    assert table.returncode == 2 and "DB_PASSWORD" in table.stdout


def test_volume_copy_sandbox_uploads(sandbox: Any, tmp_path: Path) -> None:
    rb = write_runbook(tmp_path, {1: [{"id": "copy-uploads", "uses": "volume.copy",
                                       "with": {"volume": "wpcs-uploads", "target": "wpcs-uploads"}}]},
                       environment=_environment(sandbox, tmp_path))
    sd = tmp_path / "state"
    crashed = migrate("run", "--runbook", str(rb), "--state-dir", str(sd),
                      env={"MIGRATE_FAILPOINTS": "copy-uploads:after-file@3=crash"})
    assert crashed.returncode == -9, crashed.stderr
    resumed = migrate("resume", "--runbook", str(rb), "--state-dir", str(sd))
    assert resumed.returncode == 0, resumed.stderr
    facts = json.loads((sd / "test.state.json").read_text())["steps"]["copy-uploads"]["facts"]
    dest = tmp_path / "wpcs-uploads"
    local = {p.relative_to(dest).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in dest.rglob("*") if p.is_file()}
    assert len(local) == facts["files_total"] == facts["verified_files"] and facts["files_skipped_last"] >= 3
