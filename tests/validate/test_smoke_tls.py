"""validate.smoke over HTTPS: SNI and verification against the public name, a private CA through ca_file."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import PermanentError
from tests.util import engine, write_runbook

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


class Ok(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=sevensa.test", "-addext", "subjectAltName=DNS:*.sevensa.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield httpd.server_address[1], cert
    finally:
        httpd.shutdown()
        httpd.server_close()


def _run(tmp_path: Path, **with_: Any) -> Any:
    step = {"id": "smoke", "uses": "validate.smoke", "gate": {"timeout": 0.5, "interval": 0.2},
            "with": {"address": "127.0.0.1", "scheme": "https", "hosts": ["rentguy.sevensa.test"], **with_}}
    eng = engine(write_runbook(tmp_path, {4: [step]}))
    eng.run()
    return eng


def test_private_ca_verifies_the_public_name(tmp_path: Path, tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    eng = _run(tmp_path, port=port, ca_file=str(cert))
    assert eng.state.steps["smoke"].report["hosts"]["rentguy.sevensa.test"]["/health"]["status"] == 200


def test_unknown_ca_fails_unless_opted_out(tmp_path: Path, tls_server: tuple[int, Path]) -> None:
    port, _ = tls_server
    with pytest.raises(PermanentError, match="rentguy.sevensa.test/health: .*CERTIFICATE_VERIFY_FAILED"):
        _run(tmp_path / "a", port=port)
    _run(tmp_path / "b", port=port, tls_verify=False)


def test_name_outside_the_certificate_fails(tmp_path: Path, tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    with pytest.raises(PermanentError, match="other.example/health: .*(mismatch|doesn't match|not valid)"):
        _run(tmp_path, port=port, ca_file=str(cert), hosts=["other.example"])
