"""`migrate init NAME`: a runbook for a new environment from an inventory, every service mapped to the
steps that move it or flagged UNMAPPED; or a copy of a builtin example."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.util import migrate

INVENTORY = {"host": "deploy@203.0.113.7:2222", "projects": {"shop": {"services": {
    "rentguy-db": {"containers": [{"mounts": [{"type": "volume", "name": "shop_rentguy-db-data"}]}]},
    "wpcs-wordpress": {"containers": [{"mounts": [{"type": "volume", "name": "shop_wpcs-uploads"}]}]},
    "mystery-cache": {"containers": [{"mounts": [{"type": "volume", "name": "shop_cache"}]}]}}}},
    "databases": [{"service": "rentguy-db", "databases": [{"name": "rentguy"}, {"name": "postgres"}]}]}


def test_a_runbook_from_an_inventory(tmp_path: Path) -> None:
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps(INVENTORY))
    proc = migrate("init", "shop-prod", "--inventory", str(inv), "--dir", str(tmp_path / "rb"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "rb" / "shop-prod.yaml"
    text = out.read_text()
    services = {line.split(":")[0].strip("# "): line.split(":", 1)[1] for line in text.splitlines()
                if line.startswith("#   ")}
    assert set(services) == {"rentguy-db", "wpcs-wordpress", "mystery-cache"}  # every service listed
    assert "UNMAPPED" in services["mystery-cache"]
    assert "rentguy-db-statefulset" in services["rentguy-db"] and "parity-rentguy" in services["rentguy-db"]
    assert "copy-wpcs-uploads" in services["wpcs-wordpress"]
    doc = yaml.safe_load(text)
    assert doc["name"] == "shop-prod" and all(p.startswith("builtin:phases/") for p in doc["phases"])
    assert doc["environment"]["source"]["ssh"] == {"host": "203.0.113.7", "port": 2222, "user": "deploy",
                                                   "known_hosts": "TODO-known_hosts-file"}
    assert doc["environment"]["source"]["compose_project"] == "shop"
    assert doc["vars"]["source_services"] == ["mystery-cache", "rentguy-db", "wpcs-wordpress"]
    assert doc["images"] == {"from_vps": {"rentguy-db": "rentguy-db", "wpcs-wordpress": "wpcs-wordpress"}}
    assert all(list(ref) == ["env"] for ref in doc["secrets"].values())  # references only, never values
    status = migrate("status", "--json", "-r", str(out), "--state-dir", str(tmp_path / "st"))
    assert status.returncode == 0, status.stderr  # it loads: the builtin phases, its own vars
    env = doc["environment"]
    assert env["target"]["ingress_address"].startswith("TODO-") and "rentguy-db" in env["target"]["endpoints"]
    assert env["dns"]["zone"].startswith("TODO-") and env["openbao"]["source"]["address"].startswith("TODO-")
    named = {env["dns"]["tsig"]["secret"], env["openbao"]["source"]["token"], env["openbao"]["target"]["token"],
             env["keycloak"]["source"]["admin_password"]}
    assert named <= set(doc["secrets"])  # every credential the environment names is a reference
    # With every secret given, a run still refuses the TODO- values, each named, before anything is written.
    secrets_env = {ref["env"]: f"value-of-{key}" for key, ref in doc["secrets"].items()}
    secrets_env["SHOP_PROD_TSIG_SECRET"] = "bWlncmF0b3ItdGVzdC10c2lnLWtleS0zMi1ieXRlcyE="
    run = migrate("run", "-r", str(out), "--state-dir", str(tmp_path / "st2"), env=secrets_env)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert all("still a TODO-... placeholder from `migrate init`; fill it in" in line for line in lines), lines
    fields = {line.split(": ")[1] for line in lines}
    assert {"environment.target.ingress_address", "environment.dns.primary.host", "environment.openbao.source.address",
            "environment.source.address", "vars.domain"} <= fields, fields
    assert not (tmp_path / "st2").exists()
    again = migrate("init", "shop-prod", "--inventory", str(inv), "--dir", str(tmp_path / "rb"))
    assert again.returncode == 2 and "exists; not overwritten" in again.stderr


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{not json")
    for argv, expected in ((["Bad_Name", "--inventory", "x.json"], "is not a runbook name"),
                           (["ok", "--inventory", "x.json"], "not readable as JSON"),
                           (["ok"], "give --inventory FILE"),
                           (["ok", "--from", "builtin:../../etc/passwd"], "not a builtin file")):
        proc = migrate("init", *argv, cwd=tmp_path)
        assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_copy_of_the_builtin_example_runs_where_it_was_written(tmp_path: Path) -> None:
    proc = migrate("init", "mine", "--from", "builtin:runbooks/examples/local.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load((tmp_path / "mine.yaml").read_text())
    assert doc["phases"] == [f"builtin:runbooks/examples/phases/{n}" for n in
                             ("1-prepare.yaml", "2-build.yaml", "3-publish.yaml")]
    run = migrate("run", "-r", "mine.yaml", "--approve", "approve-build", cwd=tmp_path,
                  env={"EXAMPLE_API_TOKEN": "token-for-the-example"})
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "work" / "site" / "index.txt").is_file() and (tmp_path / "state" / "mine.state.json").is_file()
