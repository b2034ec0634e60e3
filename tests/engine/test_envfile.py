"""The one env-file reader: Compose's dialect, and what a runbook secret from an env file resolves to."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.runbook.envfile import EnvFileError, parse_env, read_env_file
from tests.util import migrate, write_runbook

COMPOSE_STYLE = """\
# credentials
export DB_PASSWORD=s3cret-one
PLAIN=two words # a comment after whitespace
HASH=x#y
SINGLE='literal ${DB_PASSWORD} # kept'
DOUBLE="tab\\tquote\\" ${DB_PASSWORD}"
MULTI="-----BEGIN KEY-----
line two
-----END KEY-----"
DEFAULTED=${UNSET_IN_FILE:-fallback}
EMPTY=
BARE_KEY
  SPACED = padded
"""


def test_compose_semantics() -> None:
    values = parse_env(COMPOSE_STYLE)
    assert values == {
        "DB_PASSWORD": "s3cret-one",
        "PLAIN": "two words",
        "HASH": "x#y",
        "SINGLE": "literal ${DB_PASSWORD} # kept",
        "DOUBLE": 'tab\tquote" s3cret-one',
        "MULTI": "-----BEGIN KEY-----\nline two\n-----END KEY-----",
        "DEFAULTED": "fallback",
        "EMPTY": "",
        "SPACED": "padded",
    }


def test_interpolation_never_reads_this_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME_SECRET", "from-the-shell")
    assert parse_env("A=${HOME_SECRET}\nB=${HOME_SECRET:-d}\n") == {"A": "", "B": "d"}


def test_a_broken_line_names_its_line_not_its_content(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("A=1\n'unterminated=canary-value-77\n")
    with pytest.raises(EnvFileError) as err:
        read_env_file(path)
    assert f"{path}:2:" in str(err.value)
    assert "canary-value-77" not in str(err.value)


def test_the_readers_agree() -> None:
    # the sandbox's credentials and the target Keycloak's process use the same function as the runbook
    import migrator.sandbox.envfile as sandbox_envfile
    import migrator.sandbox.keycloak_host as keycloak_host
    import migrator.steps.keycloak as keycloak_steps

    assert keycloak_host.read_env_file is read_env_file
    assert keycloak_steps.__dict__.get("read_env_file", read_env_file) is read_env_file
    assert sandbox_envfile.read_env_file is read_env_file


def _runbook(tmp_path: Path, key: str) -> Path:
    return write_runbook(tmp_path, {1: [
        {"id": "write-it", "uses": "file.write", "with": {"path": "out.txt", "content": "${secrets.pw}"}},
    ]}, secrets={"pw": {"file": "creds.env", "key": key}})


def test_a_file_secret_from_a_compose_env_file(tmp_path: Path) -> None:
    (tmp_path / "creds.env").write_text(COMPOSE_STYLE)
    proc = migrate("run", "-r", str(_runbook(tmp_path, "MULTI")), "--state-dir", str(tmp_path / "st"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.txt").read_text() == "-----BEGIN KEY-----\nline two\n-----END KEY-----"


def test_an_unreadable_env_file_is_bad_input_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "creds.env").write_text("PW='canary-value-88\n")
    proc = migrate("run", "-r", str(_runbook(tmp_path, "PW")), "--state-dir", str(tmp_path / "st"))
    assert proc.returncode == 2, proc.stderr
    assert "creds.env:1: not KEY=value" in proc.stderr
    assert "canary-value-88" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
