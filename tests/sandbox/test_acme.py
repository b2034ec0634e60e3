"""The VPS Traefik's acme.json in the sandbox: Let's Encrypt v2 format, one real certificate per public host
issued by the sandbox's CA, kept 0600 in Traefik's volume; tls.import-acme's parser accepts it; the coverage
gate of the sandbox runbook sees the volume (excluded with its reason); no key in the sandbox's logs."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path

import pytest
from cryptography import x509

from migrator.adapters.acme import parse
from migrator.sandbox import seed_acme
from migrator.sandbox.compose import container_id
from migrator.sandbox.dockerd import docker_cli, docker_env
from migrator.sandbox.layout import DNS_ZONE, PUBLIC_HOSTS, Paths
from migrator.sandbox.platform import SandboxInfo
from migrator.sandbox.proc import run
from tests.util import REPO, migrate

pytestmark = pytest.mark.sandbox


def _in_traefik(paths: Paths, *argv: str) -> bytes:
    cid = container_id(paths, seed_acme.SERVICE)
    return run([docker_cli(), "exec", cid, *argv], env=docker_env(paths), timeout=30).stdout


def test_traefik_has_an_acme_json_the_import_step_reads(sandbox: SandboxInfo, tmp_path: Path) -> None:
    paths = Paths(sandbox.dir)
    raw = _in_traefik(paths, "cat", "/letsencrypt/acme.json")
    assert _in_traefik(paths, "stat", "-c", "%a %u", "/letsencrypt/acme.json").split() == [b"600", b"0"]
    doc = json.loads(raw)
    assert list(doc) == ["letsencrypt"] and doc["letsencrypt"]["Account"]["KeyType"] == "EC256"
    certs = parse(raw, "traefik:/letsencrypt/acme.json")  # the step's own reader: chain, key and names checked
    hosts = {f"{h}.{DNS_ZONE}" for h in PUBLIC_HOSTS}
    assert {c.main for c in certs} == hosts and all(c.resolver == "letsencrypt" for c in certs)
    ca = x509.load_pem_x509_certificate((paths.root / "acme-ca.pem").read_bytes())
    now = dt.datetime.now(dt.UTC)
    for c in certs:
        leaf = x509.load_pem_x509_certificates(c.chain_pem)[0]
        leaf.verify_directly_issued_by(ca)  # raises unless the sandbox's CA signed it
        assert leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc
        assert dt.timedelta(days=89) < c.not_after - now <= dt.timedelta(days=90)
    # Idempotent: a second seeding keeps the file (same certificates).
    seed_acme.seed_acme(paths, lambda _: None)
    assert _in_traefik(paths, "cat", "/letsencrypt/acme.json") == raw
    # No key material in what the sandbox logged or recorded.
    keys = [base64.b64encode(c.key_pem).decode()[40:80] for c in certs] + [
        doc["letsencrypt"]["Account"]["PrivateKey"][20:60]]
    for f in [*paths.logs.rglob("*"), paths.root / "sandbox.json"]:
        if f.is_file():
            text = f.read_text(errors="replace")
            assert not any(k in text for k in keys) and "PRIVATE KEY" not in text, f

    # The coverage gate of the sandbox's own runbook sees the volume, excluded with its reason.
    proc = migrate("inspect", "--json", "--runbook", str(REPO / "runbooks" / "sandbox.yaml"),
                   "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "traefik-letsencrypt" in proc.stdout + proc.stderr
    assert not any(k in proc.stdout + proc.stderr for k in keys)

    # What it adds to `sandbox up` (run there beside the other seeders): a fresh seeding, timed.
    _in_traefik(paths, "rm", "/letsencrypt/acme.json")
    started = time.monotonic()
    seed_acme.seed_acme(paths, lambda _: None)
    print(f"FIGURE seed_acme from scratch: {time.monotonic() - started:.2f}s for {len(hosts)} certificates")
    assert {c.main for c in parse(_in_traefik(paths, "cat", "/letsencrypt/acme.json"), "again")} == hosts
