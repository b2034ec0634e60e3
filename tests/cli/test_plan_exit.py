"""`migrate plan` is honest: exit 0 only when every selected step was planned, exit 4 ("plan incomplete")
naming each step that could not be and why, in text and in JSON, from the real process."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from tests.util import migrate, write_runbook


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def _runbook(tmp_path: Path, *, with_dns: bool) -> Path:
    steps: list[dict[str, Any]] = [{"id": "work", "uses": "shell.run", "with": {"command": "true"}}]
    env: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    if with_dns:
        port = _closed_port()
        steps.append({"id": "dns-lower-ttl", "uses": "dns.lower-ttl", "with": {"records": ["rentguy"], "ttl": 60}})
        env = {"dns": {"zone": "sevensa.test", "primary": {"host": "127.0.0.1", "port": port},
                       "tsig": {"name": "k", "secret": "tsig"}, "timeout_s": 0.5}}
        (tmp_path / "rb").mkdir(parents=True, exist_ok=True)
        (tmp_path / "rb" / "tsig.key").write_text("c2VjcmV0LXRzaWcta2V5LWZvci10ZXN0cw==\n")
        secrets = {"tsig": {"file": "tsig.key"}}
    return write_runbook(tmp_path / "rb", {1: steps}, environment=env or None, secrets=secrets or None)


def _args(rb: Path, tmp_path: Path) -> list[str]:
    return ["plan", "--runbook", str(rb), "--state-dir", str(tmp_path / "state")]


def test_complete_plan_exits_0(tmp_path: Path) -> None:
    rb = _runbook(tmp_path, with_dns=False)
    proc = migrate(*_args(rb, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "PLAN INCOMPLETE" not in proc.stderr
    js = migrate(*_args(rb, tmp_path), "--json")
    assert js.returncode == 0, js.stderr
    doc = json.loads(js.stdout)
    assert doc["complete"] is True and doc["cannot_plan"] == []


def test_a_step_that_cannot_be_planned_exits_4_and_is_named_with_why(tmp_path: Path) -> None:
    rb = _runbook(tmp_path, with_dns=True)
    proc = migrate(*_args(rb, tmp_path))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "? [1] dns-lower-ttl: cannot plan: primary (127.0.0.1:" in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("PLAN INCOMPLETE: 1 of 2 steps cannot be planned: dns-lower-ttl: primary (127.0.0.1:")
    assert "Traceback" not in proc.stderr and "work" not in last.split(":", 1)[1].split("dns-lower-ttl")[0]

    js = migrate(*_args(rb, tmp_path), "--json")
    assert js.returncode == 4, js.stderr
    doc = json.loads(js.stdout)
    assert doc["complete"] is False
    assert [u["id"] for u in doc["cannot_plan"]] == ["dns-lower-ttl"]
    assert doc["cannot_plan"][0]["why"].startswith("primary (127.0.0.1:")
    # Only the steps asked for count: planning the other one alone is complete.
    assert migrate(*_args(rb, tmp_path), "--step", "work").returncode == 0
