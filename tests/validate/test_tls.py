"""validate.tls: one handshake per public host through one address, SNI choosing the certificate (as the
ingress does): the chain against the runbook's CA, the name, and the expiry against min_days."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import PermanentError
from migrator.sandbox.ca import CA
from tests.util import engine, write_runbook

DOMAIN = "sevensa.test"


@pytest.fixture
def ingress(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """A TLS listener on 127.0.0.1 choosing its certificate by SNI; returns (port, CA bundle, other CA)."""
    import socket

    ca, stranger = CA.create("ingress test CA"), CA.create("someone else's CA")
    now = dt.datetime.now(dt.UTC)
    issued = {
        f"rentguy.{DOMAIN}": ca.issue([f"rentguy.{DOMAIN}", f"api.rentguy.{DOMAIN}"], days=90),
        f"api.rentguy.{DOMAIN}": ca.issue([f"rentguy.{DOMAIN}", f"api.rentguy.{DOMAIN}"], days=90),
        f"old.{DOMAIN}": ca.issue([f"old.{DOMAIN}"], not_before=now - dt.timedelta(days=30), days=20),
        f"soon.{DOMAIN}": ca.issue([f"soon.{DOMAIN}"], days=3),
        f"foreign.{DOMAIN}": stranger.issue([f"foreign.{DOMAIN}"], days=90),
    }
    contexts = {}
    for host, cert in issued.items():
        cert.write(tmp_path / f"{host}.crt", tmp_path / f"{host}.key")
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_cert_chain(tmp_path / f"{host}.crt", tmp_path / f"{host}.key")
        contexts[host] = c
    default = ca.issue(["traefik.default"], days=90)  # what Traefik serves for a name it has no certificate for
    default.write(tmp_path / "default.crt", tmp_path / "default.key")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "default.crt", tmp_path / "default.key")

    def by_name(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        if name in contexts:
            sock.context = contexts[name]

    server_ctx.sni_callback = by_name  # type: ignore[assignment]
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], ca.write_bundle(tmp_path / "ca.pem"), stranger.write_bundle(tmp_path / "x.pem")
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def _run(tmp_path: Path, port: int, ca: Path | None, names: list[str], **extra: Any) -> Any:
    with_: dict[str, Any] = {"address": "127.0.0.1", "port": port, "domain": DOMAIN, "names": names, **extra}
    if ca is not None:
        with_["ca_file"] = str(ca)
    step = {"id": "tls", "uses": "validate.tls", "with": with_, "gate": {"timeout": 0.5, "interval": 0.2}}
    eng = engine(write_runbook(tmp_path, {4: [step]}))
    eng.run()
    return eng


def test_every_host_verified_and_reported(tmp_path: Path, ingress: tuple[int, Path, Path]) -> None:
    port, ca, _ = ingress
    eng = _run(tmp_path, port, ca, ["rentguy", "api.rentguy"])
    report = eng.state.steps["tls"].report
    assert report["hosts_checked"] == 2 and report["hosts_failed"] == 0
    assert 89 < report["hosts"][f"api.rentguy.{DOMAIN}"]["days_left"] <= 90
    assert report["hosts"][f"rentguy.{DOMAIN}"]["issuer"] == "ingress test CA"


@pytest.mark.parametrize(("name", "why"), [
    ("old", "certificate not trusted for this name: certificate has expired"),
    ("soon", "expires in 3.0 days (the runbook wants more than 14)"),
    ("missing", "certificate not trusted for this name: Hostname mismatch"),  # Traefik's default certificate
    ("foreign", "certificate not trusted for this name: self-signed certificate in certificate chain"),
])
def test_a_bad_certificate_fails_the_gate_with_one_line(tmp_path: Path, ingress: tuple[int, Path, Path],
                                                        name: str, why: str) -> None:
    port, ca, _ = ingress
    with pytest.raises(PermanentError) as err:
        _run(tmp_path, port, ca, ["rentguy", name])
    message = str(err.value)
    assert f"1 of 2 hosts fail TLS through 127.0.0.1:{port}: {name}.{DOMAIN}: {why}" in message
    assert "\n" not in message


def test_the_system_cas_do_not_trust_a_private_ca(tmp_path: Path, ingress: tuple[int, Path, Path]) -> None:
    port, _, _ = ingress
    with pytest.raises(PermanentError, match="self-signed certificate in certificate chain"):
        _run(tmp_path, port, None, ["rentguy"])


def test_nothing_listening_is_a_reason_too(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PermanentError, match=f"rentguy.{DOMAIN}: ConnectionRefusedError"):
        _run(tmp_path, port, None, ["rentguy"])


def test_tls_verify_false_is_refused_as_bad_input(tmp_path: Path) -> None:
    from migrator.errors import InputError

    with pytest.raises(InputError) as err:
        _run(tmp_path, 443, None, ["rentguy"], tls_verify=False)
    assert any("tls_verify: false makes this gate meaningless" in p for p in err.value.problems)
