"""The runbooks shipped in runbooks/: they load, they share the phases, and production holds no secret."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.runbook.model import EnvSecret, FileSecret, OpenBaoSecret, Runbook
from migrator.steps.catalogue import load_runbook
from tests.util import REPO, migrate

RUNBOOKS = REPO / "runbooks"
ALL = ["sandbox.yaml", "sevensa.yaml", "kind.yaml", "examples/local.yaml"]
ENVIRONMENTS = ["sandbox.yaml", "sevensa.yaml", "kind.yaml"]
PRODUCTION = RUNBOOKS / "sevensa.yaml"


def load(name: str) -> Runbook:
    return load_runbook(RUNBOOKS / name, check_secrets=False)


@pytest.mark.parametrize("name", ALL)
def test_every_runbook_loads_and_validates(name: str) -> None:
    rb = load(name)
    assert rb.steps, f"{name}: no steps"


def test_the_environments_run_the_same_phases() -> None:
    """Phases 1-5 are every environment's; phase 6 (gitops.handoff) is opt-in: only where ArgoCD runs."""
    loaded = {name: load(name) for name in ENVIRONMENTS}
    phase_files = {name: [str((rb.dir / p).resolve()) for p in rb.file.phases] for name, rb in loaded.items()}
    everything = [str(p) for p in sorted((REPO / "phases").glob("*.yaml"))]
    shared = [p for p in everything if not p.endswith("6-gitops.yaml")]
    assert phase_files["sevensa.yaml"] == everything
    assert phase_files["sandbox.yaml"] == phase_files["kind.yaml"] == shared  # nothing there plays ArgoCD
    ids = {name: rb.step_ids() for name, rb in loaded.items()}
    assert ids["sevensa.yaml"] == [*ids["sandbox.yaml"], "gitops-handoff"] and ids["sandbox.yaml"] == ids["kind.yaml"]
    assert loaded["sevensa.yaml"].phases() == [1, 2, 3, 4, 5, 6]


# -- production: flags and values a rehearsal may relax, production may not ----------------------------------
def test_production_is_marked_and_strict() -> None:
    rb = load("sevensa.yaml")
    v, env = rb.file.vars, rb.environment
    assert rb.file.production is True
    assert v["domain"] == "sevensa.nl" and v["public_scheme"] == "https"
    assert v["dns_ttl_wait_override_s"] is None
    assert v["retention_s"] == 7 * 24 * 3600
    assert v["watch_timeout_s"] == 1800 and v["watch_successes"] >= 300
    assert v["watch_successes"] * 2 <= v["watch_timeout_s"]  # a round takes more than its 1 s interval
    assert v["dns_low_ttl"] == 60
    assert v["replicas"]["rentguy-api"] == 3
    assert v["keycloak_set_hostname"]["via"] == "configmap"
    assert env.source is not None and env.source.address == "147.93.57.40"
    assert env.source.ssh.accept_unknown_host_key is False and env.source.ssh.known_hosts
    assert env.target is not None and env.target.data_access == "port-forward"
    assert env.target.ingress_scheme == "https" and env.target.ingress_port == 443
    for name, ep in env.target.endpoints.items():
        port = {"wpcs-mysql": 3306, "rentguy-redis": 6379}.get(name, 5432)
        assert ep.namespace and ep.pod == f"{name}-0" and ep.remote_port == port, name
    assert env.openbao is not None and env.openbao.source_via_ssh is not None
    assert env.keycloak is not None
    assert env.openbao.source.tls_verify and env.openbao.target.tls_verify
    assert env.keycloak.source.tls_verify and env.keycloak.target.tls_verify


# -- production: references only -------------------------------------------------------------------------------
def test_production_secrets_are_references_only() -> None:
    raw = yaml.safe_load(PRODUCTION.read_text())
    assert raw["secrets"], "no secrets section"
    for name, ref in raw["secrets"].items():
        assert isinstance(ref, dict) and len(ref) == 1, f"secrets.{name}: {ref!r} is not a reference"
        (kind, where), = ref.items()
        assert kind in ("env", "file", "openbao"), f"secrets.{name}: {kind!r} is not a reference kind"
        if kind == "env":
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", where), f"secrets.{name}: {where!r} is not an env var name"
        elif kind == "openbao":
            assert set(where) <= {"path", "key", "mount"} and {"path", "key"} <= set(where), name
    rb = load("sevensa.yaml")
    for name, model in rb.file.secrets.items():
        assert isinstance(model, EnvSecret | FileSecret | OpenBaoSecret), name
        if isinstance(model, FileSecret):  # never a file of this repository
            assert model.file.startswith(("~/", "/")) or model.file.startswith("./secrets/"), name


def _secret_fields(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (path, value) of the environment whose key names a credential."""
    out: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if key in ("token", "admin_password", "secret", "password"):
                out.append((here, value))
            out += _secret_fields(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _secret_fields(value, f"{path}.{i}")
    return out


def test_production_environment_names_its_secrets() -> None:
    rb = load("sevensa.yaml")
    fields = _secret_fields(rb.environment.model_dump(mode="json"))
    assert fields, "no credential in the environment?"
    for where, value in fields:
        if value is not None:
            assert value in rb.file.secrets, f"environment.{where}: {value!r} is not the name of a runbook secret"


CREDENTIAL_KEY = re.compile(r"^\s*-?\s*([\w.-]*(?:password|passwd|secret|token|api_key|apikey|private_key)[\w.-]*)"
                            r"\s*:\s*(.*)$", re.IGNORECASE)
INLINE = re.compile(r"([\w.-]*(?:password|passwd|secret|token)[\w.-]*)\s*:\s*([^\s,{}\[\]]+)", re.IGNORECASE)


def test_production_file_has_no_literal_credential() -> None:
    rb = load("sevensa.yaml")
    names = set(rb.file.secrets)
    for lineno, line in enumerate(PRODUCTION.read_text().splitlines(), 1):
        text = re.sub(r"(^|\s)#.*$", "", line)  # comments
        if not text.strip():
            continue
        found = [m.groups() for m in INLINE.finditer(text)]
        block = CREDENTIAL_KEY.match(text)
        if block and block.group(2).strip():
            found.append(block.groups())
        for key, value in found:
            value = value.strip().strip("'\"")
            if value.startswith(("{", "[")) or value in names or value in ("null", "~"):
                continue
            pytest.fail(f"sevensa.yaml:{lineno}: {key}: {value!r} looks like a literal credential")


# -- production: the guard ---------------------------------------------------------------------------------------
def _env_secret_vars() -> list[str]:
    return [ref.env for ref in load("sevensa.yaml").file.secrets.values() if isinstance(ref, EnvSecret)]


def test_status_reads_production_without_secrets_and_writes_nothing(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _env_secret_vars():
        monkeypatch.delenv(var, raising=False)
    state = tmp_path / "state"
    proc = migrate("status", "--json", "--runbook", str(PRODUCTION), "--state-dir", str(state))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["runbook"] == "sevensa"
    assert [s["id"] for s in data["steps"]] == load("sevensa.yaml").step_ids()
    assert {s["status"] for s in data["steps"]} == {"pending"}
    assert not state.exists()


def test_run_without_the_secrets_names_each_missing_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The secrets are checked when the runbook is loaded, before the production guard.
    missing = _env_secret_vars()
    assert missing
    for var in missing:
        monkeypatch.delenv(var, raising=False)
    state = tmp_path / "state"
    proc = migrate("run", "--runbook", str(PRODUCTION), "--state-dir", str(state))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    for var in missing:
        assert f"environment variable {var} is not set" in proc.stderr
    assert not state.exists()


@pytest.mark.parametrize("verb", [["run"], ["resume"], ["rollback", "--all"]])
def test_production_refuses_without_yes_and_without_a_terminal(tmp_path: Path, verb: list[str]) -> None:
    dummies = {var: f"dummy-value-{i}-not-a-secret" for i, var in enumerate(_env_secret_vars())}
    # the TSIG key is read at load: the dummy must be shaped like one (base64, 32 bytes)
    dummies["SEVENSA_TSIG_SECRET"] = "ZHVtbXktdHNpZy1rZXktbm90LWEtc2VjcmV0LTMyYg=="
    state = tmp_path / "state"
    proc = migrate(*verb, "--runbook", str(PRODUCTION), "--state-dir", str(state), env=dummies)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "production runbook 'sevensa'" in proc.stderr and "pass --yes" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not state.exists()  # refused before any state, journal or lock was written
    assert "▶" not in proc.stdout  # no step started


# Step types that read the VPS (its containers, databases, OpenBao or Keycloak).
READS_THE_VPS = ("compose.", "postgres.", "openbao.", "keycloak.", "volume.")


@pytest.mark.parametrize("name", ["sandbox", "kind", "sevensa"])
def test_rolling_back_a_step_that_reads_the_vps_also_undoes_the_decommission(name: str) -> None:
    """After the cutover the Compose stack is down. `rollback --step X --cascade` undoes X's dependents
    first; unless the decommission is among them (its rollback is `compose up -d`), running X again would
    find no VPS to read. A chaos run found openbao-verify that way: nothing needed it."""
    rb = load_runbook(REPO / "runbooks" / f"{name}.yaml", check_secrets=False)
    dependents: dict[str, set[str]] = {s.id: set() for s in rb.steps}
    for s in rb.steps:
        for n in s.spec.needs:
            dependents[n].add(s.id)

    def closure(step_id: str) -> set[str]:
        seen, todo = set(), [step_id]
        while todo:
            for d in dependents[todo.pop()] - seen:
                seen.add(d)
                todo.append(d)
        return seen

    orphans = [s.id for s in rb.steps if s.spec.uses.startswith(READS_THE_VPS) and s.id != "decommission"
               and "decommission" not in closure(s.id)]
    assert orphans == []
