"""Benchmark: copy one database three ways between the same two real PostgreSQL 15 servers.

    python bench/db_copy.py --scale 70                 # about 1 GB; --via sandbox when the sandbox is up
    python bench/db_copy.py --scale 70 --via local     # both servers throw-away clusters on this machine

(a) pg_dump -Fc | pg_restore, streamed, (b) pgcopydb clone, (c) migrator's postgres.copy (the real step,
driven by the engine, its cheap catalog gate included). The source is pgbench data (`pgbench -i -s N`)
plus the tests' mixed-type tables. The target is a throw-away local cluster. The source is either
- `--via sandbox`: a database `bench_copy` created for the run in the sandbox VPS's `rentguy-db` container
  (see bench/sandbox_source.py) and dropped at the end; (a) runs pg_dump in the container through the
  Docker exec stream over SSH, (b) reaches it through an SSH tunnel, (c) reads it by docker exec over SSH
  with the sandbox runbook's environment; or
- `--via local`: a second throw-away local cluster (pg tools against 127.0.0.1).
The last line is machine-readable:

    db_copy scale=N bytes=B t_dump_restore=S t_pgcopydb=S t_migrator=S ratio_vs_dump_restore=R1 ratio_vs_pgcopydb=R2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from migrator.adapters.pgsource import PgSource, local_tool  # noqa: E402
from migrator.adapters.postgres import PgConn, clean_env, passfile  # noqa: E402
from tests.postgres.cluster import Cluster  # noqa: E402
from tests.postgres.seed import SEED  # noqa: E402

PASSWORD = "bench-pw-1234"
SETTINGS = {"fsync": "on", "full_page_writes": "on", "shared_buffers": "256MB", "maintenance_work_mem": "256MB",
            "max_wal_size": "8GB", "checkpoint_timeout": "30min"}


def build_source(src: Cluster, db: str, scale: int) -> int:
    src.create_db(db)
    src.sql(SEED, db)
    env = clean_env(src.conn(db).env())
    subprocess.run([local_tool("pgbench"), "-i", "-q", "-s", str(scale)],
                   env=env, check=True, capture_output=True)
    src.sql("VACUUM ANALYZE", db)
    return int(src.sql(f"SELECT pg_database_size('{db}')")[0][0])


def dump_restore(src: PgConn, dst: PgConn) -> None:
    with passfile(src, dst) as pf:
        env = clean_env({"PGPASSFILE": str(pf)})
        dump = subprocess.Popen([local_tool("pg_dump"), "-Fc", "-h", src.host, "-p", str(src.port), "-U", src.user,
                                 src.database], stdout=subprocess.PIPE, env=env)
        restore = subprocess.run([local_tool("pg_restore"), "-h", dst.host, "-p", str(dst.port), "-U", dst.user,
                                  "-d", dst.database, "--no-owner"], stdin=dump.stdout, env=env, capture_output=True)
        assert dump.stdout is not None
        dump.stdout.close()
        if dump.wait() != 0 or restore.returncode != 0:
            raise SystemExit(f"dump|restore failed: {restore.stderr.decode()[-500:]}")


def pgcopydb(src: PgConn, dst: PgConn, jobs: int, work: Path) -> None:
    with passfile(src, dst) as pf:
        env = clean_env({"PGPASSFILE": str(pf)})
        proc = subprocess.run(["pgcopydb", "clone", "--source", src.uri(), "--target", dst.uri(), "--dir", str(work),
                               "--table-jobs", str(jobs), "--index-jobs", str(jobs), "--no-owner"],
                              env=env, capture_output=True)
        if proc.returncode != 0:
            raise SystemExit(f"pgcopydb failed: {proc.stderr.decode()[-800:]}")


def with_params(base: dict[str, Any], params: list[str]) -> dict[str, Any]:
    """`base` with KEY=VALUE overrides (dotted keys reach into source/target; values parsed as YAML)."""
    import copy

    import yaml

    out = copy.deepcopy(base)
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param {item!r}: expected KEY=VALUE, e.g. split_mb=0 or source.compression=gzip")
        *path, last = key.split(".")
        node = out
        for k in path:
            node = node.setdefault(k, {})
        node[last] = yaml.safe_load(value)
    return out


def migrator_copy(src: Cluster, dst: Cluster, db: str, target_db: str, jobs: int, work: Path,
                  params: list[str]) -> dict[str, object]:
    from tests.postgres.conftest import db_params, environment
    from tests.util import engine, write_runbook

    os.environ["PG_PASSWORD"] = PASSWORD
    rb = write_runbook(work, {1: [{"id": "copy", "uses": "postgres.copy",
                                   "with": with_params(db_params(db, target_db, jobs=jobs), params)}]},
                       environment=environment(src, dst), secrets={"pg": {"env": "PG_PASSWORD"}})
    eng = engine(rb)
    eng.run()
    return dict(eng.state.steps["copy"].report)


def parity(source_query: Callable[[str], list[list[str]]], dst: Cluster, target_db: str) -> list[str]:
    from migrator.steps.postgres import pg_schema
    from migrator.steps.postgres.pg_verify import compare

    problems, _ = compare(source_query, pg_schema.query_of(dst.conn(target_db)))
    return problems


def settle(dst: Cluster) -> None:
    """Each method starts from a quiet disk: the previous one's dirty pages and WAL are written out first
    (otherwise their writeback lands on whichever method runs next)."""
    dst.sql("CHECKPOINT")
    os.sync()


def target_floor(dst: Cluster, db: str) -> dict[str, Any]:
    """The target's own share of the work, with no source and no transport: the largest table copied by
    (c), loaded again from a file on the target's disk (server-side COPY FROM, one transaction with
    FREEZE), its primary key built and ANALYZE run. No streaming method can finish the whole database
    faster than this part of it on the same target."""
    table, pk = dst.sql("""SELECT format('%I.%I', n.nspname, c.relname),
                                  (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.i)
                                     FROM pg_constraint x, unnest(x.conkey) WITH ORDINALITY k(att, i), pg_attribute a
                                    WHERE x.conrelid = c.oid AND x.contype = 'p' AND a.attrelid = c.oid
                                      AND a.attnum = k.att)
                             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                            ORDER BY pg_relation_size(c.oid) DESC LIMIT 1""", db)[0]
    data = dst.root / "floor.bin"  # the cluster's own directory: the server may write there
    try:
        dst.sql(f"COPY {table} TO '{data}' (FORMAT binary)", db)
        size = data.stat().st_size
        dst.sql(f"CREATE TABLE floor_load (LIKE {table}) WITH (autovacuum_enabled = off)", db)
        # The 7M rows (c) just loaded would be vacuumed during the measurement: not the target's load work.
        for (name,) in dst.sql("SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = "
                               "c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', "
                               "'information_schema')", db):
            dst.sql(f"ALTER TABLE {name} SET (autovacuum_enabled = off)", db)
        dst.sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
        settle(dst)
        t0 = time.monotonic()
        dst.sql(f"BEGIN; TRUNCATE floor_load; COPY floor_load FROM '{data}' (FORMAT binary, FREEZE); COMMIT", db)
        t1 = time.monotonic()
        if pk:
            dst.sql(f"ALTER TABLE floor_load ADD PRIMARY KEY ({pk})", db)
        t2 = time.monotonic()
        dst.sql("ANALYZE floor_load", db)
        t3 = time.monotonic()
    finally:
        data.unlink(missing_ok=True)
    return {"table": table, "bytes": size, "copy": t1 - t0, "pk": t2 - t1, "analyze": t3 - t2, "total": t3 - t0}


def cpu_busy() -> float:
    """Seconds of CPU the whole machine spent busy (all processes: both servers, the container, us)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed(label: str, fn: object) -> float:
    t, busy = time.monotonic(), cpu_busy()
    fn()  # type: ignore[operator]
    s, cpu = time.monotonic() - t, cpu_busy() - busy
    # On a small machine both servers share the cores: a method can only be as fast as its CPU allows.
    print(f"{label}: {s:.2f} s (machine CPU busy {cpu:.1f} s, {100 * cpu / (s * (os.cpu_count() or 1)):.0f}% "
          f"of {os.cpu_count()} cores)", flush=True)
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=70)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--via", choices=("auto", "sandbox", "local"), default="auto",
                    help="where the source lives (auto: the sandbox when it is up, else local)")
    ap.add_argument("--no-parity", action="store_true", help="skip the (untimed) parity check of each copy")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the target-only reference load of the largest table (after the last run of c)")
    ap.add_argument("--repeat", type=int, default=1, help="run each method N times (1-9); the medians are compared")
    ap.add_argument("--methods", default="abc", help="which of a, b, c to run (e.g. c while tuning; the summary "
                    "line needs all three)")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="a postgres.copy parameter for (c), e.g. split_mb=0 or source.compression=gzip")
    args = ap.parse_args()
    if not 1 <= args.repeat <= 9:
        ap.error("--repeat: expected 1 to 9")
    if not args.methods or set(args.methods) - set("abc"):
        ap.error("--methods: expected letters among a, b, c")
    via = args.via
    if via != "local":
        from bench.sandbox_source import sandbox_up

        why_not = sandbox_up()
        if why_not and via == "sandbox":
            raise SystemExit(f"--via sandbox: {why_not}")
        via = "local" if why_not else "sandbox"
        if why_not:
            print(f"(sandbox not usable: {why_not})", flush=True)
    dst = Cluster("bench-dst", PASSWORD, SETTINGS).start()
    work = Path(tempfile.mkdtemp(prefix="migrator-bench-"))
    src: Cluster | None = None
    sandbox = None
    cleanup_error: Exception | None = None
    summary = ""
    try:
        t = time.monotonic()
        if via == "sandbox":
            from bench.sandbox_source import SandboxSource

            sandbox = SandboxSource(work)
            print(f"path: sandbox (source {sandbox.label}: pg tools run in the container by docker exec over "
                  f"SSH {sandbox.ssh.label}; target: local cluster 127.0.0.1:{dst.port})", flush=True)
            size = sandbox.build(args.scale)
            source_query = sandbox.source().query
            sb = sandbox
            run_a = lambda: sb.dump_restore(dst.conn("t_dump"))  # noqa: E731
            run_b = lambda i: sb.pgcopydb(dst.conn("t_pgcopydb"), args.jobs, work / f"pgcopydb{i}")  # noqa: E731
            run_c = lambda i: sb.migrator_copy(dst.conn(), "t_migrator", args.jobs, work / f"rb{i}",  # noqa: E731
                                               args.param)
            label_a = "(a) pg_dump -Fc in the container (docker exec over SSH) | pg_restore"
            label_b = "(b) pgcopydb clone through an SSH tunnel"
        else:
            src = Cluster("bench-src", PASSWORD, SETTINGS).start()
            print("path: local (pg tools run on this machine against two clusters on 127.0.0.1; no SSH, no docker "
                  "exec)", flush=True)
            size = build_source(src, "bench", args.scale)
            s_conn = src.conn("bench")
            source_query = PgSource.local(s_conn).query
            sc = src
            run_a = lambda: dump_restore(s_conn, dst.conn("t_dump"))  # noqa: E731
            run_b = lambda i: pgcopydb(s_conn, dst.conn("t_pgcopydb"), args.jobs, work / f"pgcopydb{i}")  # noqa: E731
            run_c = lambda i: migrator_copy(sc, dst, "bench", "t_migrator", args.jobs, work / f"rb{i}",  # noqa: E731
                                            args.param)
            label_a = "(a) pg_dump -Fc | pg_restore"
            label_b = "(b) pgcopydb clone"
        print(f"source: pgbench scale {args.scale} + mixed types, {size / 1e6:.0f} MB, built in "
              f"{time.monotonic() - t:.0f} s", flush=True)
        report: dict[str, object] = {}
        times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        floor: dict[str, Any] = {}
        methods = [("a", "t_dump", label_a, lambda i: run_a()),
                   ("b", "t_pgcopydb", f"{label_b} --table-jobs {args.jobs} --index-jobs {args.jobs}", run_b),
                   ("c", "t_migrator", f"(c) migrator postgres.copy jobs={args.jobs} {' '.join(args.param)}".rstrip(),
                    lambda i: report.update(run_c(i)))]
        for i in range(args.repeat):
            rnd = f" [run {i + 1}/{args.repeat}]" if args.repeat > 1 else ""
            for key, db, label, run in (m for m in methods if m[0] in args.methods):
                if key == "c":
                    dst.sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')  # postgres.copy creates it
                else:
                    dst.create_db(db)
                settle(dst)
                times[key].append(timed(label + rnd, lambda run=run, i=i: run(i)))
                if i == args.repeat - 1 and not args.no_parity:
                    problems = parity(source_query, dst, db)
                    print(f"parity {db}: {'ok' if not problems else problems}", flush=True)
                if i == args.repeat - 1 and key == "c" and not args.no_floor:
                    floor = target_floor(dst, db)
                    print(f"floor: the target alone loads {floor['table']} ({floor['bytes'] / 1e6:.0f} MB) from a "
                          f"file on its own disk in {floor['total']:.2f} s (COPY FREEZE {floor['copy']:.2f}, "
                          f"primary key {floor['pk']:.2f}, ANALYZE {floor['analyze']:.2f}): no source, no "
                          "transport, one table", flush=True)
                # Dropped before the next method: the autovacuum of 7M fresh rows would run during it.
                dst.sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        med = {k: statistics.median(v) for k, v in times.items() if v}
        if args.repeat > 1:
            print("medians of {} runs: {}".format(args.repeat, " ".join(f"{k}={v:.2f}" for k, v in med.items())),
                  flush=True)
        print(f"migrator report: {report}", flush=True)
        if "a" in med and floor:
            print(f"0.8 x t_dump_restore = {0.8 * med['a']:.2f} s; the target-only floor for the largest table "
                  f"= {floor['total']:.2f} s", flush=True)
        if len(med) == 3:
            t_a, t_b, t_c = med["a"], med["b"], med["c"]
            summary = (f"db_copy scale={args.scale} bytes={size} t_dump_restore={t_a:.2f} t_pgcopydb={t_b:.2f} "
                       f"t_migrator={t_c:.2f} ratio_vs_dump_restore={t_c / t_a:.2f} "
                       f"ratio_vs_pgcopydb={t_c / t_b:.2f}")
        else:
            summary = f"db_copy scale={args.scale} bytes={size} methods={args.methods} (partial: no ratios)"
    finally:
        if sandbox is not None:
            try:
                sandbox.close()  # drops bench_copy (waits for the container if someone stopped it)
                print("sandbox: bench_copy dropped", flush=True)
            except Exception as exc:  # reported, never hiding why the run itself failed
                cleanup_error = exc
                print(f"sandbox: cleanup failed: {exc}", file=sys.stderr, flush=True)
        if src is not None:
            src.stop()
        dst.stop()
        shutil.rmtree(work, ignore_errors=True)
    if cleanup_error is not None:
        raise SystemExit(1)
    print(summary, flush=True)  # the last line, after the cleanup's own lines


if __name__ == "__main__":
    main()
