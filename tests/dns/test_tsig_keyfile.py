"""TSIG keys as BIND's own key file (what tsig-keygen writes) as well as bare base64; anything else is
refused when the runbook is loaded, in one line, never at update time as a misleading BADSIG."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from migrator.runbook.tsig import TSIGKeyError, resolve
from tests.dns.bind_fixture import TSIG_KEYGEN, BindPair
from tests.dns.conftest import dns_runbook
from tests.util import migrate

SECRET = "c2VjcmV0LXZhbHVlLTEyMzQ1Njc4OTA="  # base64, 24 bytes


@pytest.mark.parametrize("text", [
    SECRET,
    f"{SECRET}\n",
    f'key "k1" {{\n\talgorithm hmac-sha512;\n\tsecret "{SECRET}";\n}};\n',
    f'# made by hand\nkey k1 {{ secret "{SECRET}"; /* alg */ algorithm hmac-sha512; }}; // end\n',
    f'key "other" {{ algorithm hmac-sha256; secret "YW5vdGhlci1rZXktdmFsdWUtMzItYnl0ZXMtbG9uZyE="; }};\n'
    f'key "k1" {{ algorithm hmac-sha512; secret "{SECRET}"; }};\n',
])
def test_formats_read(text: str) -> None:
    algorithm, secret = resolve(text, "k1", None)
    assert secret == SECRET
    assert algorithm == ("hmac-sha256" if text.strip() == SECRET else "hmac-sha512")


def test_a_secret_holding_comment_marks_is_read_whole() -> None:
    """base64 has "/" and "+": "//" inside the quoted secret is no comment (about 1 key in 100 has it)."""
    import base64

    raw = b"\xff\xf0" + b"\xff" * 30 + b"\x00" * 4  # encodes with "//" in it
    secret = base64.b64encode(raw).decode()
    assert "//" in secret
    text = f'key "k1" {{ algorithm hmac-sha256; secret "{secret}"; }}; # a "quoted" comment // too\n'
    assert resolve(text, "k1", None) == ("hmac-sha256", secret)


@pytest.mark.parametrize("text,name,algorithm,expected", [
    ("not a key at all", "k1", None, "not a base64 TSIG key or a BIND key file"),
    ("passwordpassword", "k1", None, "not a base64 TSIG key or a BIND key file"),  # 12 bytes
    (f'key "k2" {{ algorithm hmac-sha256; secret "{SECRET}"; }};', "k1", None,
     "the key file defines key 'k2', not 'k1'"),
    (f'key "k1" {{ algorithm hmac-sha256; secret "{SECRET}"; }};', "k1", "hmac-sha512",
     "the key file says algorithm hmac-sha256, the runbook hmac-sha512"),
    ('key "k1" { algorithm hmac-sha256; secret "!!not-base64!!"; };', "k1", None, "its secret is not base64"),
    ('key "k1" { algorithm hmac-sha256; };', "k1", None, 'key "k1" has no secret'),
])
def test_refusals_name_the_problem_never_the_secret(text: str, name: str, algorithm: str | None,
                                                    expected: str) -> None:
    with pytest.raises(TSIGKeyError) as err:
        resolve(text, name, algorithm)
    assert expected in str(err.value)
    assert SECRET not in str(err.value)


def keygen_file(bind: BindPair) -> str:
    """BIND's key file for the fixture's key, in tsig-keygen's own layout (tabs, newlines)."""
    sample = subprocess.run([TSIG_KEYGEN, "-a", "hmac-sha256", bind.key_name], capture_output=True, text=True,
                            check=True, timeout=10).stdout
    fresh = sample.split('secret "', 1)[1].split('"', 1)[0]
    return sample.replace(fresh, bind.key_secret)


def test_an_update_signed_with_a_bind_key_file(tmp_path: Path, bind: BindPair) -> None:
    rb = dns_runbook(tmp_path / "rb", bind, key=keygen_file(bind))
    proc = migrate("run", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"), "--step", "dns-lower-ttl")
    assert proc.returncode == 0, proc.stderr


def test_a_key_file_for_another_key_is_refused_at_load(tmp_path: Path, bind: BindPair) -> None:
    text = keygen_file(bind).replace(f'key "{bind.key_name}"', 'key "someone-else"')
    rb = dns_runbook(tmp_path / "rb", bind, key=text)
    before = bind.axfr(without_serial=False)
    proc = migrate("run", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"), "--step", "dns-lower-ttl")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "environment.dns.tsig.secret" in line]
    assert len(lines) == 1 and "runbook.yaml:" in lines[0]
    assert "the key file defines key 'someone-else', not 'migrator-key'" in lines[0]
    assert bind.key_secret not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert bind.axfr(without_serial=False) == before


def test_garbage_is_refused_at_load(tmp_path: Path, bind: BindPair) -> None:
    rb = dns_runbook(tmp_path / "rb", bind, key="password123 is not a key")
    proc = migrate("plan", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2
    assert "secret 'dns_tsig': not a base64 TSIG key or a BIND key file" in proc.stderr, proc.stderr
