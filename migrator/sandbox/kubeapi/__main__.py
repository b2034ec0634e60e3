"""`python -m migrator.sandbox.kubeapi --listen 127.0.0.1:16443 --kubeconfig PATH ...`"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .ingress import Backend, parse_backend
from .launcher import NodeOptions, parse_addr, start_server

FAIL_ENV = "MIGRATOR_KUBEAPI_FAIL"


def parse_failures(items: list[str]) -> dict[str, str]:
    """`ns/name=reason` (or `ns/kind/name=reason`) entries."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, reason = item.partition("=")
        if not sep or key.count("/") not in (1, 2):
            raise SystemExit(f"--fail expects ns/name=reason, got {item!r}")
        out[key.strip()] = reason.strip() or "CrashLoopBackOff"
    return out


def parse_backends(items: list[str]) -> dict[str, Backend]:
    """`ns/svc=host:port` entries (loopback 127.0.0.0/8 only)."""
    out: dict[str, Backend] = {}
    for item in items:
        try:
            key, addr = parse_backend(item)
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
        out[key] = addr
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m migrator.sandbox.kubeapi",
                                description="Kubernetes API stand-in for the migrator's tests and rehearsal.")
    p.add_argument("--listen", default="127.0.0.1:16443", help="loopback ADDR:PORT for the API")
    p.add_argument("--kubeconfig", type=Path, required=True, help="where to write the kubeconfig")
    p.add_argument("--ingress-listen", default=None, help="loopback ADDR:PORT for the ingress stand-in")
    p.add_argument("--ready-delay", type=float, default=0.3, help="seconds before workloads become ready")
    p.add_argument("--state-file", type=Path, default=None, help="JSON file the cluster state persists to")
    p.add_argument("--fail", action="append", default=[], metavar="NS/NAME=REASON",
                   help=f"workload that never becomes ready (repeatable; also ${FAIL_ENV}, ';'-separated)")
    p.add_argument("--backend", action="append", default=[], metavar="NS/SVC=HOST:PORT",
                   help="reverse-proxy ingress requests for this Service to a real HTTP server in 127.0.0.0/8 "
                        "(repeatable)")
    p.add_argument("--node-docker-host", default=None, metavar="unix://PATH",
                   help="a dockerd that plays the node: pods run there as containers")
    p.add_argument("--node-root", type=Path, default=None, help="directory for the pods' files (with a node)")
    p.add_argument("--missing-images", choices=("fail", "simulate"), default="fail",
                   help="a workload pod whose images the node lacks: ImagePullBackOff (fail) or simulated")
    p.add_argument("--restart-backoff", type=float, default=10.0, help="the kubelet's first restart delay (s)")
    p.add_argument("--job-backoff", type=float, default=10.0, help="the Job controller's first retry delay (s)")
    p.add_argument("--pause-image", default=NodeOptions.pause_image, help="the pods' sandbox container image")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    env_fail = [x for x in os.environ.get(FAIL_ENV, "").split(";") if x.strip()]
    backends = parse_backends(args.backend)
    host, port = parse_addr(args.listen)
    node = None
    if args.node_docker_host:
        root = args.node_root or args.kubeconfig.parent / "kubelet"
        node = NodeOptions(args.node_docker_host, root, args.missing_images, args.restart_backoff, args.job_backoff,
                           args.pause_image)
    handle = start_server(host, port, ready_delay=args.ready_delay, state_file=args.state_file,
                          kubeconfig_file=args.kubeconfig, ingress=args.ingress_listen,
                          failures=parse_failures(env_fail + args.fail), backends=backends, node=node)
    logging.info("kube API stand-in on %s (ingress %s), kubeconfig %s", handle.url, handle.ingress_url,
                 args.kubeconfig)
    for key, (bhost, bport) in backends.items():
        logging.info("ingress backend %s -> http://%s:%d", key, bhost, bport)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not done.wait(1.0):
        pass
    handle.stop()
    logging.info("kube API stand-in stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
