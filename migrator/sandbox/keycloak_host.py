"""Runs the sandbox's Keycloak stand-in (``standins/keycloak.py``, serving from its real PostgreSQL) on a
loopback address of the host, with its environment read from an env file.

    python keycloak_host.py PORT ENV_FILE [HOST]

Run as a script with the migrator's interpreter; of the migrator it imports only the one env-file
reader (``migrator.runbook.envfile``). The env file is the pod's environment, read as Compose reads an
env file. Secrets stay in
that file (mode 0600) and in this process's environment, never in argv.

The stand-in reads KC_* once, at import, as Keycloak reads its configuration at start. So the process
**re-executes itself whenever the env file changes**: a watcher thread polls the file's
(mtime, size, inode) every 0.2 s, waits until the new content has settled for one more poll, and then
re-executes with the same argv. Nobody has to send a signal: the migrator's ``keycloak.migrate`` step only
rewrites the KC_HOSTNAME line (atomically, a new inode). SIGHUP forces the same re-execution; SIGTERM
and SIGINT stop it. The pid stays the same across re-executions, and the listening socket is handed
over (its fd is inherited), so connections made during a reload wait in the backlog and are not refused.

This lives outside ``standins/`` on purpose: every ``standins/*.py`` goes into the stand-in container
image, and a new file there would change that image's hash and so recreate a running sandbox's
containers.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import signal
import socket
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from migrator.runbook.envfile import read_env_file

STANDINS = Path(__file__).resolve().parent / "standins"
POLL_INTERVAL = 0.2
#: env var naming the inherited listening socket's fd (set across a re-execution only)
LISTEN_FD_ENV = "KEYCLOAK_HOST_LISTEN_FD"
#: env var listing the keys the previous execution loaded from the file (so a removed key goes away)
FILE_KEYS_ENV = "KEYCLOAK_HOST_FILE_KEYS"


Signature = tuple[int, int, int] | None


def signature(path: Path) -> Signature:
    """What changes when the file is rewritten in place or replaced; None while it is missing."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def load_environment(env_file: Path) -> None:
    for key in filter(None, os.environ.pop(FILE_KEYS_ENV, "").split(",")):
        os.environ.pop(key, None)
    values = read_env_file(env_file)
    os.environ.update(values)
    os.environ[FILE_KEYS_ENV] = ",".join(sorted(values))


def make_server(host: str, port: int, handler: type) -> DrainingServer:
    inherited = os.environ.pop(LISTEN_FD_ENV, "")
    if inherited.isdigit():
        sock = socket.socket(fileno=int(inherited))
        httpd = DrainingServer((host, port), handler, bind_and_activate=False)
        httpd.socket.close()
        httpd.socket = sock
        httpd.server_address = sock.getsockname()[:2]
        httpd.server_name, httpd.server_port = host, port
    else:
        httpd = DrainingServer((host, port), handler)
    return httpd


class DrainingServer(ThreadingHTTPServer):
    """Counts the requests being served, so a re-execution waits for them instead of cutting a response."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inflight = 0
        self.idle = threading.Condition()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self.idle:
            self.inflight += 1
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.idle:
                self.inflight -= 1
                self.idle.notify_all()

    def drain(self, timeout: float) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.inflight == 0, timeout)


class Watcher(threading.Thread):
    """Polls the env file; when it changed and settled, asks the server to stop for a re-execution."""

    def __init__(self, env_file: Path, first: Signature, httpd: ThreadingHTTPServer) -> None:
        super().__init__(name="env-file-watcher", daemon=True)
        self.env_file, self.seen, self.httpd = env_file, first, httpd
        self.reload = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(POLL_INTERVAL):
            now = signature(self.env_file)
            if now is None or now == self.seen:
                continue
            if self.stopping.wait(POLL_INTERVAL) or signature(self.env_file) != now:
                continue  # still being written: look again next round
            sys.stderr.write(f"keycloak-host: {self.env_file} changed; re-executing\n")
            self.request_reload()
            return

    def request_reload(self) -> None:
        if not self.reload.is_set():
            self.reload.set()
            threading.Thread(target=self.httpd.shutdown, name="reload", daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or not argv[1].isdigit():
        sys.stderr.write("usage: keycloak_host.py PORT ENV_FILE [HOST]\n")
        return 2
    port, env_file = int(argv[1]), Path(argv[2])
    host = argv[3] if len(argv) == 4 else "127.0.0.1"
    if not ipaddress.ip_address(host).is_loopback:
        sys.stderr.write(f"keycloak-host: only loopback addresses, not {host}\n")
        return 2
    first = signature(env_file)  # before reading: a rewrite in between is still seen as a change
    load_environment(env_file)
    sys.path.insert(0, str(STANDINS))
    keycloak = importlib.import_module("keycloak")  # reads KC_* at import
    httpd = make_server(host, port, keycloak.KeycloakHandler)
    watcher = Watcher(env_file, first, httpd)

    def on_hup(signum: int, frame: FrameType | None) -> None:
        watcher.request_reload()

    def on_term(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=httpd.shutdown, name="stop", daemon=True).start()

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    sys.stderr.write(f"keycloak-host: pid {os.getpid()} on http://{host}:{port} "
                     f"(KC_HOSTNAME={os.environ.get('KC_HOSTNAME', '')}), env file {env_file}\n")
    sys.stderr.flush()
    watcher.start()
    try:
        httpd.serve_forever(poll_interval=0.1)
    finally:
        watcher.stopping.set()
    if not watcher.reload.is_set():
        httpd.server_close()
        return 0
    httpd.drain(5.0)  # bounded: a kept-alive idle connection is cut after that, as any server restart does
    fd = httpd.socket.fileno()
    os.set_inheritable(fd, True)
    os.environ[LISTEN_FD_ENV] = str(fd)
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *argv])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
