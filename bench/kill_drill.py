"""The kill -9 drill of issue 20, longer than the test suite's ten kills: nothing is applied twice.

    .venv/bin/python bench/kill_drill.py --kills 100 [--seed 20] [--steps 4] [--seconds 1.5] [--max-seconds 600]
    sbx-run .venv/bin/python bench/kill_drill.py --remote --kills 30      # the commands run over SSH

A runbook of `--steps` shell.run steps, each appending its own line to effects.log after `--seconds`
(the line is its marker: `unless: grep -qx`). `migrate run`/`resume` is SIGKILLed at a random moment
(seeded) while its commands run, `--kills` times; after each kill the log is checked for a duplicate,
and whenever every step is done the log and the state are reset to keep killing. Needs nothing but the
venv (no sandbox). `--remote`: the steps run `on: source`, over SSH to a private sshd on 127.0.0.1 (its own
host key, user key and known_hosts; run it under sbx-run), so a kill leaves the command running on the
"VPS" and the resume must find it there. orphans_waited/stopped count the resumes that found a command of
the killed run still running and waited for it / stopped it (the journal's orphan-* and remote-orphan-*
events). Bounded: --kills at most 1000, and --max-seconds. Last line:
    kill drill kills=N rounds=R converged=C effects=E duplicates=D orphans_waited=W orphans_stopped=S
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--remote", action="store_true", help="run the steps over SSH (a private sshd)")
    opts = parser.parse_args()
    if not 1 <= opts.kills <= 1000:
        parser.error("--kills: expected 1 to 1000")
    if not 1 <= opts.max_seconds <= 7200:
        parser.error("--max-seconds: expected 1 to 7200")
    sys.path.insert(0, str(REPO))
    from tests.util import MIGRATE, write_runbook

    work = Path(tempfile.mkdtemp(prefix="bench-kill-"))
    log = work / "effects.log"
    sshd = None
    environment = None
    on: dict[str, str] = {}
    if opts.remote:
        sshd, environment = _start_sshd(work)
        on = {"on": "source"}
    try:
        return _drill(opts, work, log, environment, on, MIGRATE, write_runbook)
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(10)


def _start_sshd(work: Path) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    from tests.source.conftest import _write_sshd, free_port, start_sshd

    port = free_port()
    ssh_dir, user_key, known = _write_sshd(work, port, work / "no-docker.sock", work / "no-docker-config")
    proc = start_sshd(ssh_dir)
    ssh = {"host": "127.0.0.1", "port": port, "user": "root", "key_file": str(user_key),
           "known_hosts": str(known), "config_file": str(work / "no-ssh-config")}
    return proc, {"source": {"ssh": ssh, "address": "127.0.0.1"}}


def _drill(opts: argparse.Namespace, work: Path, log: Path, environment: dict[str, object] | None,
           on: dict[str, str], MIGRATE: list[str], write_runbook: Any) -> int:
    # Absolute paths: over SSH the commands do not run in the runbook's directory.
    runbook = write_runbook(work, {1: [
        {"id": f"e{i}", "uses": "shell.run", **({"needs": [f"e{i - 1}"]} if i else {}),
         "with": {**on, "command": f"sleep {opts.seconds}; echo effect-{i} >> {log}",
                  "unless": f"grep -qx effect-{i} {log}"}} for i in range(opts.steps)]},
        environment=environment)
    state = work / "st"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["-r", str(runbook), "--state-dir", str(state)]
    rnd = random.Random(opts.seed)
    kills = rounds = converged = effects = duplicates = waited = stopped = 0
    started = time.monotonic()

    def orphans() -> tuple[int, int]:
        journal = state / "test.journal.jsonl"
        events = [json.loads(line).get("event") for line in journal.read_text().splitlines()] if journal.exists() else []
        # A still-running command of a killed run that the resume waited for / had to stop (here or remote).
        return (events.count("orphan-finished") + events.count("remote-orphan-finished"),
                events.count("orphan-stopped") + events.count("remote-orphan-stopped"))

    def recorded() -> bool:
        try:
            doc = json.loads((state / "test.state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return doc.get("extra", {}).get("last_run") is not None

    def lines() -> list[str]:
        return log.read_text().split() if log.exists() else []

    while kills < opts.kills and time.monotonic() - started < opts.max_seconds:
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
            converged += 1
            w, st = orphans()
            waited, stopped = waited + w, stopped + st
            log.unlink()
            for f in state.glob("*"):
                f.unlink()
    final = subprocess.run([*MIGRATE, "resume" if recorded() else "run", *args], env=env, capture_output=True)
    now = lines()
    duplicates += len(now) - len(set(now))
    effects += len(now)
    rounds += 1
    ok = final.returncode == 0 and sorted(set(now)) == [f"effect-{i}" for i in range(opts.steps)]
    converged += ok
    w, st = orphans()
    waited, stopped = waited + w, stopped + st
    print(f"{time.monotonic() - started:.0f}s; {'remote (ssh)' if on else 'local'}; last round "
          f"{'converged' if ok else 'did NOT converge'}")
    print(f"kill drill kills={kills} rounds={rounds} converged={converged} effects={effects} duplicates={duplicates} "
          f"orphans_waited={waited} orphans_stopped={stopped}")
    return 0 if ok and duplicates == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
