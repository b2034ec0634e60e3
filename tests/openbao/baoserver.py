"""Real `bao` servers for tests: dev mode (in-memory, KV v2 at secret/) or raft-backed (init + unseal).

Every server listens on a free 127.0.0.1 port, keeps its files in a tmp dir and is stopped by its pid.
Tokens and unseal keys never go on a command line: dev servers read their root token from
BAO_DEV_ROOT_TOKEN_ID in the environment; raft servers are initialised over HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BAO = shutil.which("bao") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "bao")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 10) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("X-Vault-Token", token)
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - 127.0.0.1 only
        raw = resp.read()
    return json.loads(raw) if raw else None


@dataclass
class BaoServer:
    directory: Path
    port: int
    proc: subprocess.Popen[bytes]
    token: str = ""
    unseal_keys: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_http(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bao exited {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                http("GET", f"{self.address}/v1/sys/seal-status", timeout=2)
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"bao on {self.port} not answering after {timeout}s")

    def wait_active(self, timeout: float = 30) -> None:
        """Unsealed and the active node (raft elects itself leader shortly after unseal)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                http("GET", f"{self.address}/v1/sys/health", timeout=2)  # 200 only when active+unsealed
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"bao on {self.port} not active after {timeout}s: {self.log()[-2000:]}")

    def unseal(self, keys: list[str]) -> None:
        for key in keys:
            http("PUT", f"{self.address}/v1/sys/unseal", {"key": key})
        self.wait_active()

    def log(self) -> str:
        path = self.directory / "bao.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _spawn(directory: Path, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    log = (directory / "bao.log").open("wb")
    full_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(directory), **env}
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=directory)


def dev_server(directory: Path, token: str) -> BaoServer:
    port = free_port()
    argv = [BAO, "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token"]
    proc = _spawn(directory, argv, {"BAO_DEV_ROOT_TOKEN_ID": token, "VAULT_DEV_ROOT_TOKEN_ID": token})
    server = BaoServer(directory, port, proc, token=token)
    server.wait_active()
    return server


def raft_server(directory: Path, shares: int = 1, threshold: int = 1) -> BaoServer:
    port, cluster_port = free_port(), free_port()
    data = directory / "raft"
    data.mkdir(parents=True, exist_ok=True)
    config = directory / "bao.hcl"
    config.write_text(f"""
storage "raft" {{
  path = "{data}"
  node_id = "node-{port}"
  performance_multiplier = 1
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster_port}"
disable_mlock = true
ui = false
""")
    proc = _spawn(directory, [BAO, "server", f"-config={config}"], {})
    server = BaoServer(directory, port, proc)
    server.wait_http()
    init = http("PUT", f"{server.address}/v1/sys/init", {"secret_shares": shares, "secret_threshold": threshold})
    server.token = init["root_token"]
    server.unseal_keys = list(init["keys_base64"])
    server.unseal(server.unseal_keys[:threshold])
    # KV v2 at secret/, like a dev server.
    http("POST", f"{server.address}/v1/sys/mounts/secret", {"type": "kv", "options": {"version": "2"}},
         token=server.token)
    return server
