"""The VPS Traefik's ACME store: an `acme.json` in Traefik's `traefik-letsencrypt` volume, as Traefik v2
writes it for a Let's Encrypt (ACME v2) resolver: the account, and one certificate per public host.

The certificates are real X.509, issued by a CA made here for the sandbox (migrator/sandbox/ca.py), whose
certificate is kept at `<sandbox>/acme-ca.pem` so a client can verify them; the CA's own key is never
written anywhere. Keys exist only in the volume (0600, as Traefik keeps the file) and are never logged.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .ca import CA
from .compose import container_id
from .dockerd import docker_cli, docker_env
from .layout import DNS_ZONE, PUBLIC_HOSTS, Paths
from .proc import Log, run

SERVICE = "traefik"
MOUNT = "/letsencrypt"
RESOLVER = "letsencrypt"
EMAIL = "ops@sevensa.test"


def ca_bundle(paths: Paths) -> str:
    return str(paths.root / "acme-ca.pem")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def acme_json(hosts: list[str], ca: CA) -> bytes:
    """The store: an ACME v2 account (its own EC key, as Traefik's KeyType EC256) and a certificate per
    host, issued for 90 days like Let's Encrypt's."""
    account_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    certs = []
    for host in hosts:
        issued = ca.issue([host], days=90)
        certs.append({"domain": {"main": host}, "certificate": _b64(issued.cert_pem), "key": _b64(issued.key_pem),
                      "Store": "default"})
    store = {RESOLVER: {
        "Account": {"Email": EMAIL,
                    "Registration": {"body": {"status": "valid", "contact": [f"mailto:{EMAIL}"]},
                                     "uri": "https://acme-v02.api.letsencrypt.org/acme/acct/1234567890"},
                    "PrivateKey": _b64(account_key), "KeyType": "EC256"},
        "Certificates": certs}}
    return json.dumps(store, indent=2).encode()


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), 0o600, 1717200000
        tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def seed_acme(paths: Paths, log: Log) -> None:
    cid = container_id(paths, SERVICE)
    env = docker_env(paths)
    if run([docker_cli(), "exec", cid, "test", "-s", f"{MOUNT}/acme.json"], env=env, check=False,
           timeout=30).returncode == 0:
        log("seed acme.json: already seeded")
        return
    ca = CA.create("Sevensa sandbox ACME CA", days=100)
    hosts = [f"{h}.{DNS_ZONE}" for h in PUBLIC_HOSTS]
    data = acme_json(hosts, ca)
    ca.write_bundle(paths.root / "acme-ca.pem")
    run([docker_cli(), "cp", "-a", "-", f"{cid}:{MOUNT}"], env=env, input=_tar("acme.json", data), timeout=60)
    log(f"seed acme.json: {len(hosts)} certificate(s) of resolver {RESOLVER} into volume traefik-letsencrypt")
