"""`migrate render` timings: build the charts for the three shipped runbooks, then lint every chart and
subchart and render every chart per runbook with Helm's engine (helm-python-sdk), best of --repeat runs.

    .venv/bin/python bench/render.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from migrator.commands import render
from migrator.steps.catalogue import load_runbook

REPO = Path(__file__).resolve().parents[1]
RUNBOOKS = ["runbooks/sandbox.yaml", "runbooks/sevensa.yaml", "runbooks/kind.yaml"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runbooks = [load_runbook(REPO / p, check_secrets=False) for p in RUNBOOKS]
    builds, checks = [], []
    result = None
    for _ in range(max(1, min(args.repeat, 50))):
        out = Path(tempfile.mkdtemp(prefix="bench-render-"))
        try:
            t0 = time.perf_counter()
            result = render.build(runbooks)
            t1 = time.perf_counter()
            render.write(result, out, lambda r: checks.append(_timed(r)))
            builds.append(t1 - t0)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    assert result is not None
    print(f"runbooks: {len(runbooks)}  charts: {len(result.charts)}  files: {len(result.files)}  "
          f"objects compared: {result.compared}  engine: {result.helm}")
    print(f"build (templates, values, schemas, Applications): best {min(builds):.3f} s")
    print(f"lint + render + compare: best {min(checks):.3f} s")
    print(f"render best_build_s={min(builds):.3f} best_check_s={min(checks):.3f} objects={result.compared}")


def _timed(result: render.Rendered) -> float:
    t0 = time.perf_counter()
    render.check(result)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
