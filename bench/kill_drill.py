"""The kill -9 drill of issue 20, longer than the test suite's ten kills: nothing is applied twice.

    .venv/bin/python bench/kill_drill.py --kills 100 [--seed 20] [--steps 4] [--seconds 1.5]

A runbook of `--steps` shell.run steps, each appending its own line to effects.log after `--seconds`
(the line is its marker: `unless: grep -qx`). `migrate run`/`resume` is SIGKILLed at a random moment
(seeded) while its commands run, `--kills` times; after each kill the log is checked for a duplicate,
and whenever every step is done the log and the state are reset to keep killing. Needs nothing but the
venv (no sandbox). Bounded: --kills at most 1000. Last line:
    kill drill kills=N rounds=R effects=E duplicates=D
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.5)
    opts = parser.parse_args()
    if not 1 <= opts.kills <= 1000:
        parser.error("--kills: expected 1 to 1000")
    sys.path.insert(0, str(REPO))
    from tests.util import MIGRATE, write_runbook

    work = Path(tempfile.mkdtemp(prefix="bench-kill-"))
    runbook = write_runbook(work, {1: [
        {"id": f"e{i}", "uses": "shell.run", **({"needs": [f"e{i - 1}"]} if i else {}),
         "with": {"command": f"sleep {opts.seconds}; echo effect-{i} >> effects.log",
                  "unless": f"grep -qx effect-{i} effects.log"}} for i in range(opts.steps)]})
    state = work / "st"
    log = work / "effects.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["-r", str(runbook), "--state-dir", str(state)]
    rnd = random.Random(opts.seed)
    kills = rounds = effects = duplicates = 0
    started = time.monotonic()

    def recorded() -> bool:
        try:
            doc = json.loads((state / "test.state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return doc.get("extra", {}).get("last_run") is not None

    def lines() -> list[str]:
        return log.read_text().split() if log.exists() else []

    while kills < opts.kills:
        proc = subprocess.Popen([*MIGRATE, "resume" if recorded() else "run", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.3, opts.seconds * opts.steps))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        time.sleep(0.2)
        now = lines()
        duplicates += len(now) - len(set(now))
        if len(set(now)) == opts.steps or proc.returncode == 0:
            final = subprocess.run([*MIGRATE, "resume" if recorded() else "run", *args], env=env, capture_output=True)
            now = lines()
            duplicates += len(now) - len(set(now))
            effects += len(now)
            rounds += 1
            if final.returncode != 0 or sorted(set(now)) != [f"effect-{i}" for i in range(opts.steps)]:
                print(f"round {rounds}: did not converge: rc={final.returncode} effects={now}")
                return 1
            log.unlink()
            for f in state.glob("*"):
                f.unlink()
    final = subprocess.run([*MIGRATE, "resume" if recorded() else "run", *args], env=env, capture_output=True)
    now = lines()
    duplicates += len(now) - len(set(now))
    effects += len(now)
    rounds += 1
    ok = final.returncode == 0 and sorted(set(now)) == [f"effect-{i}" for i in range(opts.steps)]
    print(f"{time.monotonic() - started:.0f}s; last round {'converged' if ok else 'did NOT converge'}")
    print(f"kill drill kills={kills} rounds={rounds} effects={effects} duplicates={duplicates}")
    return 0 if ok and duplicates == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
