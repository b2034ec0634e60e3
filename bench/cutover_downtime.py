"""Benchmark: the write downtime of a database cutover, with replicate+catchup and with a plain copy.

    python bench/cutover_downtime.py --scale 70      # about 1 GB

A bounded pgbench write load (`-T`, `-R`) runs on the source; when it ends, the writers are frozen. The
downtime is the time from that freeze until the target is consistent and writable (a row inserted):
- replicate_s: postgres.replicate ran before the load (initial sync not counted: it is done while the
  source still serves); at the freeze, postgres.catchup (lag zero, sequences, replication removed);
- copy_s: at the freeze, postgres.copy of the whole database into a fresh target database.
Last line: `cutover_downtime bytes=B replicate_s=S copy_s=S`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.db_copy import PASSWORD, SETTINGS, build_source  # noqa: E402
from migrator.adapters.pgsource import local_tool  # noqa: E402
from migrator.adapters.postgres import clean_env  # noqa: E402
from tests.postgres.cluster import Cluster  # noqa: E402


def write_load(src: Cluster, db: str, seconds: int, rate: int) -> str:
    """pgbench's TPC-B-like writes, bounded in time and rate; returns its summary line."""
    proc = subprocess.run([local_tool("pgbench"), "-n", "-T", str(seconds), "-R", str(rate), "-c", "4", "-j", "2",
                           db], env=clean_env(src.conn(db).env()), capture_output=True, text=True,
                          timeout=seconds + 60)
    if proc.returncode != 0:
        raise SystemExit(f"pgbench failed: {proc.stderr[-500:]}")
    tps = [line for line in proc.stdout.splitlines() if line.startswith("tps")]
    return tps[0] if tps else "?"


def writable(dst: Cluster, db: str) -> None:
    dst.sql("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 0, now())", db)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=70)
    ap.add_argument("--load-seconds", type=int, default=10)
    ap.add_argument("--rate", type=int, default=300, help="pgbench -R: transactions per second")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    from tests.postgres.conftest import db_params, environment
    from tests.util import engine, write_runbook

    os.environ["PG_PASSWORD"] = PASSWORD
    src = Cluster("cut-src", PASSWORD, SETTINGS).start()
    dst = Cluster("cut-dst", PASSWORD, SETTINGS).start()
    work = Path(tempfile.mkdtemp(prefix="migrator-cutover-"))
    try:
        size = build_source(src, "bench", args.scale)
        print(f"source: pgbench scale {args.scale}, {size / 1e6:.0f} MB (local path: no sandbox)", flush=True)
        env, secrets = environment(src, dst), {"pg": {"env": "PG_PASSWORD"}}
        rb = write_runbook(work / "rb", {
            1: [{"id": "replicate", "uses": "postgres.replicate", "with": db_params("bench", "t_repl"),
                 "gate": {"timeout": 1800, "interval": 0.5}, "timeout": 1800}],
            2: [{"id": "catchup", "uses": "postgres.catchup", "with": {"replicate": "replicate"}}],
            3: [{"id": "copy", "uses": "postgres.copy", "with": db_params("bench", "t_copy", jobs=args.jobs),
                 "timeout": 1800}],
        }, environment=env, secrets=secrets)

        t = time.monotonic()
        engine(rb).run(phases=[1])
        print(f"replicate: initial sync {time.monotonic() - t:.1f} s (before the cutover, not downtime)", flush=True)
        print(f"load during replication: {write_load(src, 'bench', args.load_seconds, args.rate)}", flush=True)
        frozen = time.monotonic()
        eng = engine(rb)
        eng.run(phases=[2])
        writable(dst, "t_repl")
        replicate_s = time.monotonic() - frozen
        print(f"replicate+catchup downtime: {replicate_s:.2f} s (catchup {eng.state.steps['catchup'].report})",
              flush=True)

        print(f"load before the plain copy: {write_load(src, 'bench', args.load_seconds, args.rate)}", flush=True)
        frozen = time.monotonic()
        engine(rb).run(phases=[3])
        writable(dst, "t_copy")
        copy_s = time.monotonic() - frozen
        print(f"plain copy downtime: {copy_s:.2f} s", flush=True)
        print(f"cutover_downtime bytes={size} replicate_s={replicate_s:.2f} copy_s={copy_s:.2f}", flush=True)
    finally:
        src.stop()
        dst.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
