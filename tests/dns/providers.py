"""The zone under test behind each provider: RFC 2136 straight to BIND, or an HTTPS API stand-in
(TransIP v6, Cloudflare v4) on loopback writing into the same BIND zone.

    zone = ProviderZone(provider, bind, tmp_path)   # started by the `zone` fixture
    zone.env_dns(dir), zone.secrets(dir)           # the runbook's environment.dns and secrets
"""

from __future__ import annotations

import os
import secrets
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from migrator.sandbox.ca import CA
from migrator.sandbox.dnsapi.cloudflare import CloudflareApi
from migrator.sandbox.dnsapi.server import ApiServer
from migrator.sandbox.dnsapi.transip import TransipApi
from migrator.sandbox.dnsapi.zone import BindZone
from tests.dns.bind_fixture import BindPair

PROVIDERS = ["rfc2136", "transip", "cloudflare"]
TRANSIP_LOGIN = "sevensa-ops"


def _write_private(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


@dataclass
class ProviderZone:
    provider: str
    bind: BindPair
    root: Path
    server: ApiServer | None = None
    ca_bundle: Path | None = None
    credential: str = ""  # the provider's secret (TSIG key, TransIP private key PEM, Cloudflare token)
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def low_ttl(self) -> int:
        """The lowest TTL the provider takes: TransIP 60/300/3600/86400, Cloudflare 60 and up."""
        return 2 if self.provider == "rfc2136" else 60

    def start(self) -> ProviderZone:
        if self.provider == "rfc2136":
            self.credential = self.bind.key_secret
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        ca = CA.create("dns api test CA")
        self.ca_bundle = ca.write_bundle(self.root / "ca.pem")
        ca.issue(["127.0.0.1", "localhost"]).write(self.root / "api.crt", self.root / "api.key")
        backend = BindZone(self.bind.zone, "127.0.0.1", self.bind.primary.port, self.bind.key_name,
                           self.bind.key_secret)
        app: Any
        if self.provider == "transip":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.credential = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()).decode()
            app = TransipApi(backend, TRANSIP_LOGIN, key.public_key())
        else:
            self.credential = "cf-" + secrets.token_urlsafe(30)
            app = CloudflareApi(backend, self.credential)
        self.server = self._stack.enter_context(ApiServer(app, self.root / "api.crt", self.root / "api.key"))
        return self

    def stop(self) -> None:
        self._stack.close()

    @property
    def api_url(self) -> str:
        assert self.server is not None
        return self.server.base + ("/v6" if self.provider == "transip" else "/client/v4")

    @property
    def secret_name(self) -> str:
        return "dns_tsig" if self.provider == "rfc2136" else "dns_credential"

    def env_dns(self, *, ca: bool = True, secret: str | None = None) -> dict[str, Any]:
        """environment.dns for this provider; the credential is the runbook secret `secret_name`."""
        secret = secret or self.secret_name
        env = self.bind.env_dns("dns_tsig")
        if self.provider == "rfc2136":
            env["tsig"]["secret"] = secret
            return env
        del env["primary"], env["tsig"]
        env["provider"] = self.provider
        env["api_url"] = self.api_url
        if ca:
            env["ca_file"] = str(self.ca_bundle)
        if self.provider == "transip":
            env["transip"] = {"username": TRANSIP_LOGIN, "private_key": secret}
        else:
            env["cloudflare"] = {"token": secret}
        return env

    def write_credential(self, directory: Path, value: str | None = None) -> dict[str, Any]:
        """The credential in a 0600 file; returns the secret reference for it."""
        directory.mkdir(parents=True, exist_ok=True)
        _write_private(directory / "dns-credential", (value if value is not None else self.credential) + "\n")
        return {"file": "dns-credential"}

    def wrong_credential(self) -> str:
        """A credential of the right shape that the provider does not accept."""
        from tests.dns.bind_fixture import bogus_key

        if self.provider == "rfc2136":
            return bogus_key()
        if self.provider == "transip":
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode()
        return "cf-" + secrets.token_urlsafe(30)

    def provider_class(self) -> type:
        from migrator.adapters.dns import Rfc2136Provider
        from migrator.adapters.dns_lexicon import LexiconProvider

        return Rfc2136Provider if self.provider == "rfc2136" else LexiconProvider
