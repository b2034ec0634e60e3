"""Exec throughput into a pod through the Kubernetes API stand-in, against docker exec on the same node.

Run under sbx-run (it starts a private dockerd as the node, and a stand-in in this process):

    sbx-run .venv/bin/python bench/exec_throughput.py --mb 512 --runs 3

Paths measured, each `--runs` times, the best and median printed (MB = 10^6 bytes):
  api-exec-in    migrator.adapters.kube_stream.exec_run: bytes from an iterator -> pods/exec websocket
                 (v5.channel.k8s.io, official client) -> the stand-in -> docker exec -> `cat > /dev/null`
  api-exec-out   the reverse: `head -c N /dev/zero` in the pod -> stdout channel -> a sink here
  docker-exec-in the floor under the stand-in: `docker exec -i` (the docker CLI) into the same container
Bounded: --mb at most 4096, --runs at most 10, every exec has a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from migrator.adapters.kube import KubeCluster, Ref  # noqa: E402
from migrator.adapters.kube_stream import exec_run  # noqa: E402
from migrator.runbook.environment import TargetConfig  # noqa: E402
from migrator.sandbox import dockerd, images  # noqa: E402
from migrator.sandbox.kubeapi import NodeOptions, start_server  # noqa: E402
from migrator.sandbox.layout import IMAGE_BASE, Paths  # noqa: E402
from migrator.sandbox.platform import down  # noqa: E402

CHUNK = 256 * 1024


def source(total: int) -> Iterator[bytes]:
    block = os.urandom(CHUNK)
    sent = 0
    while sent < total:
        n = min(CHUNK, total - sent)
        yield block[:n]
        sent += n


def rate(total: int, seconds: float) -> float:
    return total / seconds / 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=int, default=128)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    if not 1 <= args.mb <= 4096 or not 1 <= args.runs <= 10:
        print("--mb must be 1..4096 and --runs 1..10", file=sys.stderr)
        return 2
    # a SIGTERM (timeout, Ctrl-C in a wrapper) still runs the clean-up below: no dockerd left behind
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    total = args.mb * 1_000_000
    root = Path(f"/tmp/bench-exec-{uuid.uuid4().hex[:8]}")
    paths = Paths(root)
    paths.logs.mkdir(parents=True)
    handle = None
    try:
        dockerd.start(paths, lambda m: None)
        images.build(paths, lambda m: None, only=(IMAGE_BASE,))
        handle = start_server(ready_delay=0.1, kubeconfig_file=root / "kubeconfig",
                              node=NodeOptions(paths.docker_host, root / "kubelet"))
        kube = KubeCluster(TargetConfig(kubeconfig=str(handle.kubeconfig), ingress_address="127.0.0.1"),
                           Path(tempfile.gettempdir()))
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
        kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sink", "namespace": "bench"},
                    "spec": {"containers": [{"name": "main", "image": IMAGE_BASE,
                                             "command": ["sh", "-c", "exec sleep 3600"]}]}})
        deadline = time.monotonic() + 60
        pod = None
        while time.monotonic() < deadline:
            pod = kube.get(Ref("Pod", "sink", "bench"))
            if pod and (pod.get("status") or {}).get("phase") == "Running":
                break
            time.sleep(0.2)
        cid = (pod or {}).get("status", {}).get("containerStatuses", [{}])[0].get("containerID", "")
        cid = cid.removeprefix("docker://")
        figures: dict[str, list[float]] = {"api-exec-in": [], "api-exec-out": [], "docker-exec-in": []}
        load = os.getloadavg()[0]
        print(f"load average {load:.1f} on {os.cpu_count()} cores (figures are only comparable on a quiet machine)",
              flush=True)
        for _ in range(args.runs):
            t0 = time.monotonic()
            res = exec_run(kube, "bench", "sink", None, ["sh", "-c", "cat > /dev/null"], stdin=source(total),
                           timeout=600)
            assert res.code == 0 and res.bytes_in == total, res
            figures["api-exec-in"].append(rate(total, time.monotonic() - t0))
            print(f"  api-exec-in    {figures['api-exec-in'][-1]:7.1f} MB/s", flush=True)
            got = [0]

            def sink(b: bytes, got: list[int] = got) -> None:
                got[0] += len(b)

            t0 = time.monotonic()
            res = exec_run(kube, "bench", "sink", None, ["head", "-c", str(total), "/dev/zero"], stdout=sink,
                           timeout=600)
            assert res.code == 0 and got[0] == total, (res, got)
            figures["api-exec-out"].append(rate(total, time.monotonic() - t0))
            print(f"  api-exec-out   {figures['api-exec-out'][-1]:7.1f} MB/s", flush=True)
            env = {**os.environ, **dockerd.docker_env(paths)}
            t0 = time.monotonic()
            proc = subprocess.Popen([dockerd.docker_cli(), "exec", "-i", cid, "sh", "-c", "cat > /dev/null"],
                                    stdin=subprocess.PIPE, env=env)
            assert proc.stdin is not None
            for chunk in source(total):
                proc.stdin.write(chunk)
            proc.stdin.close()
            assert proc.wait(timeout=600) == 0
            figures["docker-exec-in"].append(rate(total, time.monotonic() - t0))
            print(f"  docker-exec-in {figures['docker-exec-in'][-1]:7.1f} MB/s", flush=True)
        kube.close()
        summary = {}
        for name, values in figures.items():
            print(f"{name:15s} {args.mb} MB: best {max(values):7.1f} MB/s, median {statistics.median(values):7.1f} MB/s "
                  f"({', '.join(f'{v:.1f}' for v in values)})")
            summary[name] = round(statistics.median(values), 1)
        print(json.dumps({"bench": "exec_throughput", "mb": args.mb, "runs": args.runs, "median_mb_s": summary}))
        return 0
    finally:
        if handle is not None:
            handle.stop()
        env = {**os.environ, **dockerd.docker_env(paths)}
        ids = subprocess.run([dockerd.docker_cli(), "ps", "-aq"], env=env, capture_output=True, text=True,
                             check=False).stdout.split()
        if ids:
            subprocess.run([dockerd.docker_cli(), "rm", "-f", *ids], env=env, capture_output=True, check=False)
        down(root)


if __name__ == "__main__":
    sys.exit(main())
