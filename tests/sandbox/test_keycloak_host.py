"""keycloak_host.py (the target Keycloak's process) re-executes itself when its env file changes: no
signal, same pid, and its listening socket carries over so no connection is refused meanwhile.
(Needs no sandbox: the stand-in answers /version without a database.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.sandbox import target_keycloak


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _version(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as r:  # noqa: S310 - loopback
        return str(json.loads(r.read())["version"])


def _wait(pred: object, timeout: float, what: str) -> float:
    assert callable(pred)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if pred():
                return time.monotonic() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Host:
    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.env_file = tmp / "keycloak.env"
        self.env_file.write_text("KC_HOSTNAME=keycloak.infra.svc.cluster.local\nSERVICE_VERSION=v1\n"
                                 "KC_DB_URL_HOST=127.0.0.1\nKC_DB_URL_PORT=1\nEXTRA=here\n")
        self.env_file.chmod(0o600)
        self.log = tmp / "host.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, str(target_keycloak.HOST_SCRIPT), str(self.port),
                                          str(self.env_file)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        _wait(lambda: _version(self.port) == "v1", 15, "the stand-in to answer")

    def rewrite(self, old: str, new: str, atomic: bool = True) -> None:
        text = self.env_file.read_text().replace(old, new)
        if atomic:
            tmp = self.env_file.with_name("keycloak.env.tmp")
            tmp.write_text(text)
            os.replace(tmp, self.env_file)
        else:
            with open(self.env_file, "w") as fh:
                fh.write(text)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path)
    try:
        yield h
    finally:
        h.stop()


def test_env_file_change_reexecutes_without_a_signal(host: Host) -> None:
    pid = host.proc.pid
    host.rewrite("SERVICE_VERSION=v1", "SERVICE_VERSION=v2")
    took = _wait(lambda: _version(host.port) == "v2", 20, "v2")
    assert took < 10, took
    assert host.proc.poll() is None and host.proc.pid == pid
    host.rewrite("SERVICE_VERSION=v2", "SERVICE_VERSION=v3", atomic=False)  # an in-place write too
    _wait(lambda: _version(host.port) == "v3", 20, "v3")
    assert host.proc.poll() is None
    assert "re-executing" in host.log.read_text()


def test_no_connection_is_refused_during_a_reload(host: Host) -> None:
    errors: list[str] = []
    answers: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set() and len(answers) < 20000:  # bounded in count, and by stop
            try:
                answers.append(_version(host.port))
            except (urllib.error.URLError, OSError) as exc:
                errors.append(repr(exc))

    t = threading.Thread(target=hammer)
    t.start()
    try:
        host.rewrite("SERVICE_VERSION=v1", "SERVICE_VERSION=v2")
        _wait(lambda: "v2" in answers, 20, "v2 while hammering")  # bounded; CI machines are loaded
    finally:
        stop.set()
        t.join(timeout=15)
    assert not [e for e in errors if "refused" in e.lower()], errors[:3]


def test_sigterm_stops_it(host: Host) -> None:
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(timeout=10) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", host.port), timeout=1).close()


def test_refuses_non_loopback(tmp_path: Path) -> None:
    env_file = tmp_path / "e.env"
    env_file.write_text("KC_HOSTNAME=x\n")
    cp = subprocess.run([sys.executable, str(target_keycloak.HOST_SCRIPT), "1", str(env_file), "0.0.0.0"],
                        capture_output=True, text=True, timeout=30, check=False)
    assert cp.returncode == 2 and "loopback" in cp.stderr
