"""The rehearsal's wall time and per-phase times, on the local sandbox.

    .venv/bin/python bench/rehearsal.py [--keep]

Brings the sandbox up if needed, rehearses phases 1-5 into a temporary state dir (so the repository's
state/ is left alone), prints each phase, then rolls everything back so the sandbox is as it was
(unless --keep). Last line:
    rehearsal total_s=S phase1_s=.. phase2_s=.. phase3_s=.. phase4_s=.. phase5_s=..
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNBOOK = REPO / "runbooks" / "sandbox.yaml"


def migrate(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MIGRATE_FAILPOINTS"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "migrator", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the migrated platform in place")
    opts = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from migrator.sandbox import platform

    started = time.monotonic()
    platform.up(None)
    print(f"sandbox ready in {time.monotonic() - started:.1f}s", flush=True)
    state = Path(tempfile.mkdtemp(prefix="bench-rehearsal-"))
    args = ["--runbook", str(RUNBOOK), "--state-dir", str(state)]
    began = time.monotonic()
    proc = migrate("rehearse", *args)
    total = time.monotonic() - began
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        return 1
    report = json.loads((state / "sandbox.report.json").read_text())
    phases = {int(k): v["duration_s"] or 0.0 for k, v in report["phases"].items()}
    for number, seconds in sorted(phases.items()):
        print(f"phase {number} {report['phases'][str(number)]['name']:<16} {seconds:7.1f}s", flush=True)
    print(f"write downtime (freeze to DNS verified): {report['write_downtime_s']:.1f}s")
    if not opts.keep:
        undo = migrate("rollback", "--all", *args)
        print(f"rolled back in {undo.returncode == 0 and 'ok' or 'FAILED'}", flush=True)
    figures = " ".join(f"phase{n}_s={s:.1f}" for n, s in sorted(phases.items()))
    print(f"rehearsal total_s={total:.1f} {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
