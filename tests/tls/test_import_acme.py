"""tls.import-acme against a real sshd (acme.json read over SSH as the VPS would be) and the Kubernetes API
stand-in: the Secrets the Ingresses name, created as kubernetes.io/tls, key material in neither state nor
journal nor output; a host without a certificate fails naming it; rollback restores what was there."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from migrator.errors import PermanentError
from migrator.sandbox.ca import CA
from tests.util import engine

if not Path("/usr/sbin/sshd").exists():
    pytest.skip("needs sshd", allow_module_level=True)


@pytest.fixture(scope="module")
def sshd() -> Iterator[dict[str, Any]]:
    """A private sshd on loopback; the machine it runs on plays the VPS."""
    from tests.source.conftest import _stop, _write_sshd, free_port, start_sshd

    root = Path(tempfile.mkdtemp(prefix="mgtls-", dir="/tmp"))
    port = free_port()
    ssh_dir, key, known = _write_sshd(root, port, root / "no-docker.sock", root / "no-docker-config")
    proc = start_sshd(ssh_dir)
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "root", "key_file": str(key), "known_hosts": str(known),
               "config_file": str(root / "no-ssh-config"), "connect_timeout_s": 5}
    finally:
        _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def kubeapi(tmp_path: Path) -> Iterator[Any]:
    from migrator.sandbox.kubeapi import start_server

    handle = start_server(ready_delay=0.1, kubeconfig_file=tmp_path / "kubeconfig")
    try:
        yield handle
    finally:
        handle.stop()


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    from tests.util import REPO

    proc = subprocess.run([str(REPO / ".venv" / "bin" / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, input=input, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def ingress(ns: str, name: str, secret: str, hosts: list[str]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "namespace": ns},
            "spec": {"tls": [{"hosts": hosts, "secretName": secret}],
                     "rules": [{"host": h, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                         "service": {"name": "web", "port": {"number": 80}}}}]}} for h in hosts]}}


@pytest.fixture
def world(tmp_path: Path, sshd: dict[str, Any], kubeapi: Any) -> dict[str, Any]:
    kubeconfig = tmp_path / "kubeconfig"
    ca = CA.create("acme test CA")
    rent = ca.issue(["rentguy.sevensa.test", "api.rentguy.sevensa.test"], days=60)
    psra = ca.issue(["psra.sevensa.test"], days=70)
    store = {"le": {"Account": {"Email": "ops@sevensa.test"}, "Certificates": [
        {"domain": {"main": m, "sans": s}, "certificate": base64.b64encode(c.cert_pem).decode(),
         "key": base64.b64encode(c.key_pem).decode(), "Store": "default"}
        for m, s, c in (("rentguy.sevensa.test", ["api.rentguy.sevensa.test"], rent), ("psra.sevensa.test", [], psra))]}}
    acme = tmp_path / "vps" / "acme.json"
    acme.parent.mkdir()
    acme.write_text(json.dumps(store))
    acme.chmod(0o600)
    for ns in ("rentguy", "psra"):
        kubectl(kubeconfig, "apply", "-f", "-", input=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
    kubectl(kubeconfig, "apply", "-f", "-", input=yaml.safe_dump(
        ingress("rentguy", "rentguy", "rentguy-tls", ["rentguy.sevensa.test", "api.rentguy.sevensa.test"])))
    kubectl(kubeconfig, "apply", "-f", "-", input=yaml.safe_dump(
        ingress("psra", "psra", "psra-tls", ["psra.sevensa.test"])))
    return {"kubeconfig": kubeconfig, "acme": acme, "rent": rent, "psra": psra, "ca": ca, "sshd": sshd}


def runbook(tmp_path: Path, world: dict[str, Any], **with_: Any) -> Path:
    step = {"id": "import-certs", "uses": "tls.import-acme",
            "with": {"namespaces": ["rentguy", "psra"], "path": str(world["acme"]), **with_}}
    doc = {"name": "tls-test", "phases": ["p.yaml"],
           "environment": {"source": {"ssh": world["sshd"], "address": "127.0.0.10"},
                           "target": {"kubeconfig": str(world["kubeconfig"]), "ingress_address": "127.0.0.1"}}}
    d = tmp_path / "rb"
    d.mkdir(exist_ok=True)
    (d / "p.yaml").write_text(yaml.safe_dump({"phase": 3, "name": "certs", "steps": [step]}))
    (d / "runbook.yaml").write_text(yaml.safe_dump(doc))
    return d / "runbook.yaml"


def secret(kubeconfig: Path, ns: str, name: str) -> dict[str, Any]:
    return json.loads(kubectl(kubeconfig, "get", "secret", "-n", ns, name, "-o", "json"))  # type: ignore[no-any-return]


def test_import_then_roll_back(tmp_path: Path, world: dict[str, Any]) -> None:
    from tests.util import migrate

    kubeconfig = world["kubeconfig"]
    # An Opaque Secret of that name before: its type cannot change in place, so it is replaced (and put back).
    kubectl(kubeconfig, "apply", "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "psra-tls", "namespace": "psra"},
         "type": "Opaque", "data": {"tls.crt": base64.b64encode(b"old").decode()}}))
    rb = runbook(tmp_path, world)
    state = tmp_path / "state"
    outputs = []
    plan = migrate("plan", "--runbook", str(rb), "--state-dir", str(state))
    outputs += [plan.stdout, plan.stderr]
    assert plan.returncode == 0, plan.stderr
    assert "create Secret rentguy/rentguy-tls from rentguy.sevensa.test (api.rentguy.sevensa.test; resolver le" in plan.stdout
    assert "replace Secret psra/psra-tls (type Opaque: deleted, then created) from psra.sevensa.test" in plan.stdout
    run = migrate("--log-level", "debug", "run", "--runbook", str(rb), "--state-dir", str(state))
    outputs += [run.stdout, run.stderr]
    assert run.returncode == 0, run.stderr

    rent = secret(kubeconfig, "rentguy", "rentguy-tls")
    assert rent["type"] == "kubernetes.io/tls"
    assert base64.b64decode(rent["data"]["tls.crt"]) == world["rent"].cert_pem
    assert base64.b64decode(rent["data"]["tls.key"]) == world["rent"].key_pem
    assert base64.b64decode(secret(kubeconfig, "psra", "psra-tls")["data"]["tls.key"]) == world["psra"].key_pem

    # Key material nowhere but in the API server: not in state, journal, backups, or any output.
    canaries = [world["rent"].key_pem.decode().splitlines()[1], base64.b64encode(world["rent"].key_pem).decode()[:60],
                world["psra"].key_pem.decode().splitlines()[1]]
    files = [p for p in state.rglob("*") if p.is_file()]
    assert files
    for path in files:
        text = path.read_text(errors="replace")
        assert not any(c in text for c in canaries), path
    assert not any(c in out for c in canaries for out in outputs)

    again = migrate("run", "--runbook", str(rb), "--state-dir", str(state))  # done: nothing is written again
    assert again.returncode == 0, again.stderr
    assert secret(kubeconfig, "rentguy", "rentguy-tls")["metadata"]["resourceVersion"] == rent["metadata"]["resourceVersion"]

    backups = list((state / "backups").glob("*psra-tls*"))
    assert len(backups) == 1 and backups[0].stat().st_mode & 0o777 == 0o600, backups
    facts = engine(rb, state).state.steps["import-certs"].facts
    leaf = x509.load_pem_x509_certificate(world["rent"].cert_pem)
    assert facts["imported"]["Secret rentguy/rentguy-tls"]["fingerprint"] == leaf.fingerprint(hashes.SHA256()).hex()

    rolled = migrate("rollback", "--step", "import-certs", "--runbook", str(rb), "--state-dir", str(state))
    assert rolled.returncode == 0, rolled.stderr
    back = secret(kubeconfig, "psra", "psra-tls")
    assert back["type"] == "Opaque" and base64.b64decode(back["data"]["tls.crt"]) == b"old"
    proc = subprocess.run([str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"), "--kubeconfig",
                           str(kubeconfig), "get", "secret", "-n", "rentguy", "rentguy-tls"], capture_output=True, text=True)
    assert proc.returncode != 0 and "NotFound" in proc.stderr


def test_a_host_without_a_certificate_fails_naming_it(tmp_path: Path, world: dict[str, Any]) -> None:
    kubectl(world["kubeconfig"], "apply", "-f", "-", input=yaml.safe_dump(
        ingress("psra", "psra-api", "psra-api-tls", ["api.psra.sevensa.test"])))
    eng = engine(runbook(tmp_path, world))
    with pytest.raises(PermanentError) as err:
        eng.run()
    assert ("Secret psra/psra-api-tls (Ingress psra-api): no certificate in VPS:" in str(err.value)
            and "covers api.psra.sevensa.test" in str(err.value))
    assert eng.state.steps["import-certs"].facts.get("priors") is None  # nothing was touched


def test_min_days_refuses_a_certificate_about_to_expire(tmp_path: Path, world: dict[str, Any]) -> None:
    eng = engine(runbook(tmp_path, world, min_days=65))
    with pytest.raises(PermanentError, match="Secret rentguy/rentguy-tls .*expires within 65 days"):
        eng.run()


def test_unreadable_acme_json_one_line(tmp_path: Path, world: dict[str, Any]) -> None:
    eng = engine(runbook(tmp_path, world, path="/nonexistent/acme.json"))
    with pytest.raises(PermanentError, match="cannot read VPS:/nonexistent/acme.json: cat: /nonexistent/acme.json: "
                                             "No such file or directory"):
        eng.run()


def test_plan_before_the_ingresses_exist(tmp_path: Path, world: dict[str, Any]) -> None:
    """In a whole run the Ingresses come from an earlier step: the plan reads acme.json and says what it cannot know."""
    rb = runbook(tmp_path, world, namespaces=["nothere"])
    eng = engine(rb)
    [entry] = eng.plan()
    assert entry["action"] == "apply", entry
    assert entry["changes"] == [f"import from VPS:{world['acme']} (2 certificates: rentguy.sevensa.test "
                                "(api.rentguy.sevensa.test; resolver le; expires "
                                f"{world['rent'].not_after:%Y-%m-%d}); psra.sevensa.test (no SANs; resolver le; "
                                f"expires {world['psra'].not_after:%Y-%m-%d}))"]
    assert entry["unknowns"][0].startswith("no Ingress in nothere names a TLS Secret (spec.tls[].secretName) yet")
    with pytest.raises(PermanentError, match="no Ingress in nothere names a TLS Secret .*: nothing to import into"):
        engine(rb).run()
