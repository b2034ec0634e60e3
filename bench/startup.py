"""Start-up time of the commands an operator types most: `migrate --version`, `--help`, `status`, and
shell completion; and which heavy client libraries each one imported.

Each command runs in a fresh interpreter, warm (one untimed run first), best of --repeat (default 5),
with bytecode compiled once into a cache made for the run (as an installed `migrate` has it), against
a throw-away state directory made here (`status` loads `runbooks/sevensa.yaml`, with every
step type, and reads an empty state). References in the same run: a bare `python -c pass` and
`import typer` (what no `migrate` command can go below), and with `--against REV` the same commands
from that git revision (exported to a temporary directory), run alternately with this tree's so that
both see the same machine load.

    PYTHONPATH=$PWD .venv/bin/python bench/startup.py [--repeat 5] [--against main]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("paramiko", "psycopg", "docker", "hvac", "kubernetes", "redis", "pymysql", "dns", "lexicon",
         "requests", "cryptography", "urllib3", "helm_python")
# Runs the console script's entry point in-process, then writes down the heavy modules it imported.
PROBE = """
import atexit, json, os, sys
def _report():
    heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(os.environ['BENCH_HEAVY'])))
    with open(os.environ['BENCH_OUT'], 'w') as f: json.dump(heavy, f)
atexit.register(_report)
sys.argv = ['migrate'] + json.loads(os.environ['BENCH_ARGV'])
from migrator.entry import main
main()
"""
# Bytecode as an installed migrate has it: compiled once (by the warm-up run) into a cache made for the
# run, whatever PYTHONDONTWRITEBYTECODE says, without writing __pycache__ into the trees.
PYCACHE = Path(tempfile.mkdtemp(prefix="bench-startup-pycache-"))
COMPLETE = {"_MIGRATE_COMPLETE": "complete_bash", "COMP_WORDS": "migrate st", "COMP_CWORD": "1"}
CASES: list[tuple[str, list[str] | None, dict[str, str], str]] = [
    ("reference: python -c pass", None, {}, "pass"),
    ("reference: import typer", None, {}, "import typer"),
    ("migrate --version", ["--version"], {}, PROBE),
    ("migrate --help", ["--help"], {}, PROBE),
    ("migrate status (sevensa.yaml)", ["status"], {}, PROBE),
    ("shell completion (migrate st<TAB>)", [], COMPLETE, PROBE),
]


def once(tree: Path, state: str, argv: list[str] | None, extra: dict[str, str], code: str,
         out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run; CPU time is what the import work costs,
    and moves less than wall time when others load the machine."""
    env = {**os.environ, **extra, "PYTHONPATH": str(tree), "PYTHONPYCACHEPREFIX": str(PYCACHE), "MIGRATE_STATE_DIR": state,
           "MIGRATE_RUNBOOK": str(tree / "runbooks" / "sevensa.yaml"), "BENCH_ARGV": json.dumps(argv or []),
           "BENCH_OUT": str(out), "BENCH_HEAVY": json.dumps(HEAVY)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {argv}: exit {done.returncode}: {done.stderr.decode()[-500:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def export(rev: str, into: Path) -> Path:
    """The files of `rev` that a run needs (the package, runbooks, phases) under `into`."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "migrator", "runbooks", "phases"],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--against", metavar="REV", help="also time this git revision, alternately")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": ROOT}
        if args.against:
            trees[args.against] = export(args.against, Path(tmp) / "reference")
        print(f"python {sys.version.split()[0]}, best of {args.repeat} warm runs; load average "
              f"{os.getloadavg()[0]:.2f}")
        summary: dict[str, dict[str, dict[str, float]]] = {}
        print(f"{'':36} {'':12} {'wall':>7} {'cpu':>7}")
        for label, argv, extra, code in CASES:
            case_trees = trees if code == PROBE else {"this tree": ROOT}  # the references: once
            wall = {name: float("inf") for name in case_trees}
            cpu = dict(wall)
            heavy: dict[str, list[str]] = {}
            for i, (name, tree) in enumerate(case_trees.items()):
                (Path(tmp) / f"state-{i}").mkdir(exist_ok=True)
                out = Path(tmp) / "heavy.json"
                once(tree, str(Path(tmp) / f"state-{i}"), argv, extra, code, out)  # warm-up
                heavy[name] = json.loads(out.read_text()) if out.exists() else []
                out.unlink(missing_ok=True)
            for _ in range(args.repeat):
                for i, (name, tree) in enumerate(case_trees.items()):
                    w, c = once(tree, str(Path(tmp) / f"state-{i}"), argv, extra, code, Path(tmp) / "h.json")
                    wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)
            summary[label] = {name: {"wall": round(wall[name], 3), "cpu": round(cpu[name], 3)} for name in case_trees}
            for name in case_trees:
                shown = ", ".join(heavy[name]) or "none"
                where = f"[{name}]" if len(trees) > 1 else ""
                print(f"{label:36} {where:12} {wall[name]:6.3f}s {cpu[name]:6.3f}s   heavy libraries: {shown}")
    print(json.dumps({"startup_seconds": summary}))
    shutil.rmtree(PYCACHE, ignore_errors=True)


if __name__ == "__main__":
    main()
