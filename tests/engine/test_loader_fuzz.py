"""The runbook loader never crashes and never hangs: whatever it is given, it loads it or refuses it with
one line per problem, `FILE:LINE: ...` (exit 2 through the CLI), and no traceback.

Fuzzed in-process against the loader API (hypothesis, bounded in examples and time), plus the hostile
cases found by hand, through the real CLI.
"""

from __future__ import annotations

import random
import signal
import string
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.errors import InputError
from migrator.steps.catalogue import load_runbook
from tests.util import migrate

RUNBOOK = "name: fz\nphases: [p1.yaml]\nvars: {x: '1', work: /tmp}\nsecrets: {tok: {env: FUZZ_TOKEN_UNSET}}\n"
PHASE = ("phase: 1\nname: one\nsteps:\n  - id: a\n    uses: shell.run\n    with: {command: 'true', creates: /x}\n"
         "  - id: b\n    uses: file.write\n    needs: [a]\n    with: {path: /tmp/x, content: '${vars.x}'}\n")

# Fragments that broke (or could break) a YAML loader: aliases, tags, deep nesting, complex keys, NUL
# escapes, merge keys, several documents, odd scalars, control characters.
HOSTILE = [
    "&a [1, 2]", "*a", "*nope", "!!python/name:os.system", "!!python/object/apply:os.system ['true']",
    "!foo bar", "!!float abc", "!!bool maybe", "!!timestamp 2020-13-45", "2020-13-45", "!!int 0x", "!!binary x",
    "!!set {a}", "!!omap [a: 1]", "? [a, b]\n: c", "<<: {a: 1}", "\"a\\0b\"", "'\x01'", "---\nb: 1\n---\nc: 2",
    "[" * 120 + "]" * 120, "{a: " * 60 + "1" + "}" * 60, "!!str", "~", "null", ".inf", "-.nan", "0o777",
    "1e400", "9" * 5000, "${vars.x}\n", "${secrets.tok}", "${nope.x}", "$${vars.x}", "\t", "\ufeff", "\u2028",
    "%YAML 1.1\n---", "%TAG ! tag:x,2000:\n---", "a: b: c", "- - -", "|\n  x", ">-\n  y",
]

FIELDS = ["name", "phases", "vars", "secrets", "environment", "production", "state_dir", "settings", "phase",
          "steps", "id", "uses", "with", "needs", "gate", "retries", "timeout", "rollback", "command", "path",
          "content", "mode", "env", "creates", "tls_verify", "url", "http", "checks"]


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """A hang is a failure, not a stuck test run."""

    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"the loader took more than {seconds}s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_loader(directory: Path, runbook: str, phase: str) -> None:
    (directory / "rb.yaml").write_text(runbook, encoding="utf-8", errors="surrogatepass")
    (directory / "p1.yaml").write_text(phase, encoding="utf-8", errors="surrogatepass")
    started = time.monotonic()
    with time_limit(10):
        try:
            load_runbook(directory / "rb.yaml")
        except InputError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert "\n" not in problem and "\r" not in problem, problem
                assert problem.startswith(str(directory)) or problem.startswith("--"), problem
                assert "Traceback" not in problem
    assert time.monotonic() - started < 10


def mutate(text: str, rnd: random.Random) -> str:
    lines = text.split("\n")
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(6)
        i = rnd.randrange(len(lines))
        if op == 0:
            lines.insert(i, f"{' ' * rnd.choice([0, 2, 4, 6])}{rnd.choice(FIELDS)}: {rnd.choice(HOSTILE)}")
        elif op == 1:
            indent = len(lines[i]) - len(lines[i].lstrip())
            key = lines[i].strip().split(":", 1)[0] or "k"
            lines[i] = f"{' ' * indent}{key}: {rnd.choice(HOSTILE)}"
        elif op == 2:
            lines[i] = lines[i][: rnd.randrange(len(lines[i]) + 1)]
        elif op == 3 and len(lines) > 1:
            del lines[i]
        elif op == 4:
            pos = rnd.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rnd.choice(string.printable + "\x00\x7f\u00e9") + lines[i][pos:]
        else:
            lines.insert(i, rnd.choice(HOSTILE))
    return "\n".join(lines)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                      st.text(max_size=20), st.sampled_from(HOSTILE))
values = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=4)),
    max_leaves=25)


@settings(max_examples=150, deadline=5000, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), which=st.sampled_from(["runbook", "phase", "both"]))
def test_fuzz_text_mutations_load_or_refuse_in_one_line(seed: int, which: str) -> None:
    rnd = random.Random(seed)
    runbook = mutate(RUNBOOK, rnd) if which in ("runbook", "both") else RUNBOOK
    phase = mutate(PHASE, rnd) if which in ("phase", "both") else PHASE
    with tempfile.TemporaryDirectory() as d:
        check_loader(Path(d), runbook, phase)


@settings(max_examples=150, deadline=5000, derandomize=True, suppress_health_check=list(HealthCheck))
@given(step=st.dictionaries(st.sampled_from(FIELDS), values, max_size=6), top=values)
def test_fuzz_structures_load_or_refuse_in_one_line(step: dict[str, Any], top: Any) -> None:
    phase = yaml.safe_dump({"phase": 1, "name": "one", "steps": [{"id": "a", "uses": "shell.run", **step}]},
                           allow_unicode=True)
    runbook = RUNBOOK + yaml.safe_dump({"settings": top}, allow_unicode=True)
    with tempfile.TemporaryDirectory() as d:
        check_loader(Path(d), runbook, phase)


def _chain(n: int) -> str:
    steps = [{"id": f"s{i}", "uses": "shell.run", "with": {"command": "true"}, **({"needs": [f"s{i - 1}"]} if i else {})}
             for i in range(n)]
    return yaml.safe_dump({"phase": 1, "name": "one", "steps": steps})


def test_a_needs_chain_of_1200_steps_loads_and_orders_without_recursion(tmp_path: Path) -> None:
    (tmp_path / "rb.yaml").write_text("name: fz\nphases: [p1.yaml]\n")
    (tmp_path / "p1.yaml").write_text(_chain(1200))
    from tests.util import engine

    eng = engine(tmp_path / "rb.yaml")
    order = [s.id for s in eng.ordered()]
    assert order == [f"s{i}" for i in range(1200)]
    assert eng.dependents("s1198") == ["s1199"]


def test_a_1200_step_cycle_is_refused_in_one_line(tmp_path: Path) -> None:
    doc = yaml.safe_load(_chain(1200))
    doc["steps"][0]["needs"] = ["s1199"]
    (tmp_path / "rb.yaml").write_text("name: fz\nphases: [p1.yaml]\n")
    (tmp_path / "p1.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(InputError) as caught:
        load_runbook(tmp_path / "rb.yaml")
    assert len(caught.value.problems) == 1 and "dependency cycle: s0 -> s1199 -> s1198" in caught.value.problems[0]


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))

CLI_CASES = [
    ("alias bomb", BOMB, r"p1\.yaml:2: .*YAML aliases \(\*a\) are not supported"),
    ("deep nesting", "x: " + "[" * 1000 + "]" * 1000 + "\n", r"p1\.yaml:1: x(\.0)+: nested more than 40 levels deep"),
    ("python tag", "x: !!python/name:os.system\n", r"p1\.yaml:1: x: YAML tag !!python/name:os\.system is not supported"),
    ("custom tag", "x: !foo bar\n", r"p1\.yaml:1: x: YAML tag !foo is not supported"),
    ("bad float", "phase: !!float abc\n", r"p1\.yaml:1: phase: 'abc' is not a valid float value"),
    ("bad bool", "phase: !!bool maybe\n", r"p1\.yaml:1: phase: 'maybe' is not a valid bool value"),
    ("bad date", "phase: 2020-13-45\n", r"p1\.yaml:1: phase: '2020-13-45' is not a valid timestamp value"),
    ("complex key", "? [a, b]\n: c\n", r"p1\.yaml:1: .*complex mapping keys"),
    ("nul escape", 'phase: "a\\0b"\n', r"p1\.yaml:1: phase: a NUL character is not allowed"),
    ("reader error", "phase: \x01\n", r"p1\.yaml:1: invalid YAML: special character"),
    ("self alias", "a: &a [*a]\n", r"p1\.yaml:1: .*YAML aliases"),
]


@pytest.mark.parametrize(("case", "text", "expected"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_hostile_phase_files_through_the_cli(tmp_path: Path, case: str, text: str, expected: str) -> None:
    import re

    (tmp_path / "rb.yaml").write_text("name: fz\nphases: [p1.yaml]\n")
    (tmp_path / "p1.yaml").write_text(text)
    started = time.monotonic()
    proc = migrate("plan", "-r", str(tmp_path / "rb.yaml"), "--state-dir", str(tmp_path / "st"), timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(expected, lines[0]), lines[0]


def test_a_nul_in_a_phase_path_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "rb.yaml").write_text('name: fz\nphases: ["p\\0.yaml"]\n')
    proc = migrate("plan", "-r", str(tmp_path / "rb.yaml"), "--state-dir", str(tmp_path / "st"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "NUL character" in proc.stderr
