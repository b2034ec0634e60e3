"""No secret value nor token in argv, state, journal, logs or output during an OpenBao migration."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.openbao.baoserver import BaoServer
from tests.openbao.conftest import CANARY_VALUE, engine_process, kv_copy_step, runbook, seed, token_env


class ArgvScanner(threading.Thread):
    """Reads every /proc/*/cmdline until stopped; remembers any that holds a canary."""

    def __init__(self, canaries: list[str]) -> None:
        super().__init__(daemon=True)
        self.canaries = [c.encode() for c in canaries]
        self.hits: list[str] = []
        self.scans = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    raw = cmdline.read_bytes()
                except OSError:
                    continue
                if any(c in raw for c in self.canaries):
                    self.hits.append(raw.replace(b"\0", b" ").decode(errors="replace")[:200])
            self.scans += 1


def test_no_canary_anywhere(dev_pair: tuple[BaoServer, BaoServer], tmp_path: Path) -> None:
    src, tgt = dev_pair
    seed(src)
    canaries = [CANARY_VALUE, src.token, tgt.token]
    rb = runbook(tmp_path / "rb", src, tgt, [kv_copy_step(),
                                             {"id": "check", "uses": "openbao.verify", "needs": ["copy"]}])
    state = tmp_path / "state"
    scanner = ArgvScanner(canaries)
    scanner.start()
    try:
        plan = engine_process("plan", rb, tmp_path / "plan-state", {**token_env(src, tgt), "MIGRATE_LOG_LEVEL": "debug"})
        run = engine_process("run", rb, state, {**token_env(src, tgt), "MIGRATE_LOG_LEVEL": "debug"})
        again = engine_process("run", rb, tmp_path / "state2", token_env(src, tgt))
    finally:
        scanner.stop.set()
        scanner.join(timeout=10)
    assert run.returncode == 0, run.stderr
    assert plan.returncode == 0 and "re-issue" in plan.stdout, plan.stderr
    assert scanner.scans > 3 and scanner.hits == []
    outputs = [plan.stdout, plan.stderr, run.stdout, run.stderr, again.stdout, again.stderr]
    files = [p for d in (state, tmp_path / "state2") for p in d.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".journal.jsonl") for p in files)
    for canary in canaries:
        assert not any(canary in text for text in outputs), canary[:6]
        for path in files:
            assert canary.encode() not in path.read_bytes(), path
