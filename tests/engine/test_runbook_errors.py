"""Every kind of runbook mistake gives one line `FILE:LINE: field: what is wrong`, exit 2, no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.util import migrate

RUNBOOK = """name: bad
phases: [p1.yaml]
vars:
  dir: /tmp
secrets:
  token: {env: TOKEN_FOR_TEST}
"""

GOOD_STEP = """  - id: one
    uses: shell.run
    with:
      command: "true"
"""


def run_with(tmp_path: Path, phase_body: str, runbook: str = RUNBOOK, env: dict[str, str] | None = None) -> str:
    (tmp_path / "rb.yaml").write_text(runbook)
    (tmp_path / "p1.yaml").write_text("phase: 1\nname: one\nsteps:\n" + phase_body)
    proc = migrate("run", "-r", str(tmp_path / "rb.yaml"), "--state-dir", str(tmp_path / "st"),
                   env={"TOKEN_FOR_TEST": "abcdef", **(env or {})})
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "st" / "bad.state.json").exists()  # nothing written
    return proc.stderr.strip()


CASES = [
    ("unknown key", GOOD_STEP + "    colour: red\n", r"p1\.yaml:8: steps\.0\.colour: unknown key"),
    ("wrong type", GOOD_STEP + "    retries: lots\n", r"p1\.yaml:8: steps\.0\.retries: .*integer"),
    ("duplicate id", GOOD_STEP + GOOD_STEP, r"p1\.yaml:8: steps\.1\.id: duplicate step id 'one' \(first at .*p1\.yaml:4\)"),
    ("unknown step type", "  - id: one\n    uses: shell.rum\n", r"p1\.yaml:5: steps\.0\.uses: unknown step type 'shell\.rum'; did you mean 'shell\.run'\?"),
    ("cycle", GOOD_STEP + "    needs: [two]\n  - id: two\n    uses: shell.run\n    needs: [one]\n    with: {command: 'true'}\n",
     r"p1\.yaml:\d+: (one|two)\.needs: dependency cycle: "),
    ("undefined variable", "  - id: one\n    uses: shell.run\n    with:\n      command: ls ${vars.nope}\n",
     r"p1\.yaml:6: steps\.0\.with: vars\.nope is not defined"),
    ("undefined secret", "  - id: one\n    uses: shell.run\n    with:\n      command: 'true'\n      env: {X: '${secrets.nope}'}\n",
     r"p1\.yaml:6: steps\.0\.with: secret 'nope' is not defined"),
    ("bad param", "  - id: one\n    uses: file.write\n    with:\n      path: /tmp/x\n", r"p1\.yaml:6: steps\.0\.with\.content: required field is missing"),
    ("secret in argv", "  - id: one\n    uses: shell.run\n    with:\n      command: echo ${secrets.token}\n",
     r"p1\.yaml:7: steps\.0\.with\.command: .*secrets must not appear in a command line"),
    ("unknown need", GOOD_STEP + "    needs: [tow]\n", r"p1\.yaml:4: one\.needs: unknown step 'tow'"),
    ("bad id", "  - id: Dns_Cutover\n    uses: shell.run\n    with: {command: 'true'}\n", r"p1\.yaml:4: steps\.0\.id: .*kebab-case"),
    ("yaml syntax", "  - id: one\n    uses: [shell.run\n", r"p1\.yaml:\d+: invalid YAML"),
]


@pytest.mark.parametrize(("case", "body", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_mistake_gives_one_clear_line(tmp_path: Path, case: str, body: str, expected: str) -> None:
    err = run_with(tmp_path, body)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert re.search(expected, lines[0]), lines[0]
    assert lines[0].startswith(str(tmp_path))


def test_unresolvable_secret_ref_names_the_runbook_line(tmp_path: Path) -> None:
    (tmp_path / "rb.yaml").write_text(RUNBOOK)
    (tmp_path / "p1.yaml").write_text("phase: 1\nname: one\nsteps:\n" + GOOD_STEP)
    proc = migrate("run", "-r", str(tmp_path / "rb.yaml"), "--state-dir", str(tmp_path / "st"),
                   env={"TOKEN_FOR_TEST": ""} )
    # An empty value is shorter than 4 characters: refused (it could not be masked in logs).
    assert proc.returncode == 2
    assert re.search(r"rb\.yaml:6: secrets\.token: cannot resolve", proc.stderr), proc.stderr


def test_unknown_runbook_key_and_missing_file(tmp_path: Path) -> None:
    err = run_with(tmp_path, GOOD_STEP, runbook=RUNBOOK + "colour: red\n")
    assert re.search(r"rb\.yaml:7: colour: unknown key", err), err
    proc = migrate("run", "-r", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "missing.yaml: file not found" in proc.stderr


def test_several_mistakes_are_all_reported(tmp_path: Path) -> None:
    err = run_with(tmp_path, GOOD_STEP + "    colour: red\n  - id: two\n    uses: shell.rum\n")
    assert len(err.splitlines()) == 2, err
