"""Chaos drills beyond CI's two seeds (3 and 5, tests/e2e/test_chaos.py): crash the migration at a
seeded step and failpoint, resume, compare.

    .venv/bin/python bench/chaos.py --runs 50 [--first-seed 1]

Rehearses once on the sandbox (the reference), then for each seed rolls the chosen step back with what
depends on it, crashes `migrate run` there (SIGKILL), resumes, and compares the platform (databases,
DNS, Kubernetes objects, OpenBao, uploads, the VPS) with the reference. Rolls everything back at the end.
Bounded: --runs at most 500. Last line:  chaos runs=N converged=M
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNBOOK = REPO / "runbooks" / "sandbox.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=1)
    opts = parser.parse_args()
    if not 1 <= opts.runs <= 500:
        parser.error("--runs: expected 1 to 500")
    sys.path.insert(0, str(REPO))
    from migrator.sandbox import chaos, platform, snapshot

    platform.up(None)
    state = Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    args = ["--runbook", str(RUNBOOK), "--state-dir", str(state)]
    proc = chaos.migrate("rehearse", *args)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        return 1
    reference = snapshot.take()
    converged = 0
    for seed in range(opts.first_seed, opts.first_seed + opts.runs):
        began = time.monotonic()
        outcome = chaos.run_once(RUNBOOK, state, seed, reference)
        converged += outcome.converged
        print(f"seed {seed:3d} {outcome.step:<24} {outcome.when:<13} "
              f"{'converged' if outcome.converged else 'DIVERGED'} {time.monotonic() - began:6.1f}s", flush=True)
        if not outcome.converged:
            print("  " + outcome.describe().replace("\n", "\n  "), flush=True)
    undo = chaos.migrate("rollback", "--all", *args)
    print(json.dumps({"rolled_back": undo.returncode == 0}))
    print(f"chaos runs={opts.runs} converged={converged}")
    return 0 if converged == opts.runs else 1


if __name__ == "__main__":
    sys.exit(main())
