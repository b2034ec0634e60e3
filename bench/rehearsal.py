"""The rehearsal's wall time and per-phase times, on the local sandbox.

    .venv/bin/python bench/rehearsal.py [--keep] [--parallel N [N ...]]

Brings the sandbox up if needed, rehearses phases 1-5 into a temporary state dir (so the repository's
state/ is left alone), prints each phase, then rolls everything back so the sandbox is as it was
(unless --keep). With `--parallel 1 4` it rehearses once per N, in this order, in the same run (rolled
back in between), so the figures are taken under the same conditions. One line per rehearsal:
    rehearsal parallel=N total_s=S write_downtime_s=D phase1_s=.. phase2_s=.. ... phase5_s=..
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
    parser.add_argument("--keep", action="store_true", help="leave the migrated platform in place (the last run's)")
    parser.add_argument("--parallel", type=int, nargs="+", metavar="N", default=[None],
                        help="steps at once (migrate rehearse --parallel N); several: one rehearsal each")
    opts = parser.parse_args()
    if any(n is not None and not 1 <= n <= 32 for n in opts.parallel):
        parser.error("--parallel: expected integers from 1 to 32")
    sys.path.insert(0, str(REPO))
    from migrator.sandbox import platform

    started = time.monotonic()
    platform.up(None)
    print(f"sandbox ready in {time.monotonic() - started:.1f}s", flush=True)
    lines = []
    for i, parallel in enumerate(opts.parallel):
        line = rehearse_once(parallel, keep=opts.keep and i == len(opts.parallel) - 1)
        if line is None:
            return 1
        lines.append(line)
    for line in lines:
        print(line)
    return 0


def rehearse_once(parallel: int | None, keep: bool) -> str | None:
    state = Path(tempfile.mkdtemp(prefix="bench-rehearsal-"))
    args = ["--runbook", str(RUNBOOK), "--state-dir", str(state)]
    began = time.monotonic()
    proc = migrate("rehearse", *args, *(["--parallel", str(parallel)] if parallel is not None else []))
    total = time.monotonic() - began
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        return None
    report = json.loads((state / "sandbox.report.json").read_text())
    phases = {int(k): v["duration_s"] or 0.0 for k, v in report["phases"].items()}
    print(f"-- parallel {report.get('parallel', parallel or 1)}", flush=True)
    for number, seconds in sorted(phases.items()):
        print(f"phase {number} {report['phases'][str(number)]['name']:<16} {seconds:7.1f}s", flush=True)
    downtime = report["write_downtime_s"]
    print(f"write downtime (freeze to DNS verified): {downtime:.1f}s", flush=True)
    if not keep:
        undo = migrate("rollback", "--all", *args)
        print(f"rolled back: {'ok' if undo.returncode == 0 else 'FAILED'}", flush=True)
        if undo.returncode != 0:
            print(undo.stdout[-2000:], undo.stderr[-2000:], sep="\n")
            return None
    figures = " ".join(f"phase{n}_s={s:.1f}" for n, s in sorted(phases.items()))
    return (f"rehearsal parallel={report.get('parallel', parallel or 1)} total_s={total:.1f} "
            f"write_downtime_s={downtime:.1f} {figures}")


if __name__ == "__main__":
    sys.exit(main())
