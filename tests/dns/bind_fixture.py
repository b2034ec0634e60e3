"""A reusable pair of real BIND servers on loopback: a primary taking TSIG-signed updates and a secondary
fed by NOTIFY/AXFR. Used by tests/dns and, later, by the end-to-end tests.

    with BindPair(tmp_path) as bind:
        bind.env_dns(secret="dns_tsig")  # the runbook's environment.dns section
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

NAMED = "/usr/sbin/named"
TSIG_KEYGEN = "/usr/sbin/tsig-keygen"
ZONE = "sevensa.test"
OLD_ADDRESS = "127.0.0.10"
DEFAULT_HOSTS = ("rentguy", "api.rentguy", "psra", "wpcs", "keycloak", "grafana")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (named listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def make_key(name: str) -> str:
    """A fresh base64 HMAC-SHA256 key from tsig-keygen (argv holds the key name only)."""
    out = subprocess.run([TSIG_KEYGEN, "-a", "hmac-sha256", name], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    return out.split('secret "', 1)[1].split('"', 1)[0]


@dataclass
class Server:
    name: str
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "stderr.log"  # named -g logs to stderr, ignoring the logging statement


@dataclass
class BindPair:
    root: Path
    zone: str = ZONE
    hosts: tuple[str, ...] = DEFAULT_HOSTS
    address: str = OLD_ADDRESS
    ttl: int = 3600
    key_name: str = "migrator-key"
    key_secret: str = ""
    extra_records: list[str] = field(default_factory=list)
    primary: Server = field(init=False)
    secondary: Server = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.key_secret = self.key_secret or make_key(self.key_name)
        self.primary = Server("ns1", free_port(), self.root / "ns1")
        self.secondary = Server("ns2", free_port(), self.root / "ns2")

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> BindPair:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout: float = 20) -> None:
        self._write_primary()
        self._write_secondary()
        try:
            for server in (self.primary, self.secondary):  # in turn: a secondary that finds no primary backs off
                self._launch(server)
                self._wait_ready(server, timeout)
            self.wait_in_sync(timeout)
        except BaseException:
            self.stop()  # __exit__ does not run when __enter__ fails: leave no named behind
            raise

    def stop(self) -> None:
        for server in (self.secondary, self.primary):
            proc = server.proc
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.kill(proc.pid, signal.SIGCONT)  # a paused server ignores SIGTERM until it runs again
                proc.terminate()
                proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                proc.kill()
                proc.wait(timeout=10)
            server.proc = None

    def pause(self, server: Server) -> None:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)

    def resume(self, server: Server) -> None:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGCONT)

    # -- configuration ----------------------------------------------------------------------------
    def _key_clause(self) -> str:
        return f'key "{self.key_name}" {{ algorithm hmac-sha256; secret "{self.key_secret}"; }};\n'

    def _options(self, server: Server, notify: str) -> str:
        d = server.dir
        return (
            "options {\n"
            f'  directory "{d}";\n  pid-file "{d}/named.pid";\n  session-keyfile "{d}/session.key";\n'
            f'  managed-keys-directory "{d}";\n'
            f"  listen-on port {server.port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n"
            "  recursion no;\n  dnssec-validation no;\n  allow-query { 127.0.0.0/8; };\n"
            f"  notify {notify};\n  minimal-responses no;\n"
            "};\ncontrols { };\n"
            'logging { channel main { file "named.log"; severity info; print-time yes; };'
            " category default { main; }; category xfer-in { main; }; category update { main; }; };\n"
        )

    def zone_text(self) -> str:
        z = self.zone
        lines = [
            f"$ORIGIN {z}.",
            f"$TTL {self.ttl}",
            f"@ {self.ttl} IN SOA ns1.{z}. hostmaster.{z}. 1 3600 600 86400 60",
            f"@ {self.ttl} IN NS ns1.{z}.",
            f"@ {self.ttl} IN NS ns2.{z}.",
            f"ns1 {self.ttl} IN A 127.0.0.1",
            f"ns2 {self.ttl} IN A 127.0.0.1",
        ]
        lines += [f"{h} {self.ttl} IN A {self.address}" for h in self.hosts]
        lines += self.extra_records
        return "\n".join(lines) + "\n"

    def _write_primary(self) -> None:
        d = self.primary.dir
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{self.zone}.zone").write_text(self.zone_text())
        conf = self._options(self.primary, "explicit") + self._key_clause() + (
            f'zone "{self.zone}" {{\n  type primary;\n  file "{self.zone}.zone";\n'
            f'  update-policy {{ grant {self.key_name} zonesub ANY; }};\n'
            "  allow-transfer { 127.0.0.0/8; };\n"
            f"  also-notify {{ 127.0.0.1 port {self.secondary.port}; }};\n  notify-delay 0;\n}};\n"
        )
        (d / "named.conf").write_text(conf)
        os.chmod(d / "named.conf", 0o600)

    def _write_secondary(self) -> None:
        d = self.secondary.dir
        d.mkdir(parents=True, exist_ok=True)
        conf = self._options(self.secondary, "no") + (
            f'zone "{self.zone}" {{\n  type secondary;\n  file "{self.zone}.zone";\n'
            f"  primaries {{ 127.0.0.1 port {self.primary.port}; }};\n  allow-transfer {{ 127.0.0.0/8; }};\n}};\n"
        )
        (d / "named.conf").write_text(conf)

    def _launch(self, server: Server) -> None:
        out = open(server.dir / "stderr.log", "wb")  # noqa: SIM115 - owned by the child from here on
        server.proc = subprocess.Popen([NAMED, "-g", "-c", str(server.dir / "named.conf")], stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=server.dir)
        out.close()

    def _wait_ready(self, server: Server, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert server.proc is not None
            if server.proc.poll() is not None:
                raise RuntimeError(f"named {server.name} exited: {(server.dir / 'stderr.log').read_text()[-2000:]}")
            if self.soa_serial(server, quiet=True) is not None:
                return
            time.sleep(0.05)
        raise RuntimeError(f"named {server.name} not ready after {timeout}s")

    # -- looking at the zone ----------------------------------------------------------------------
    def soa_serial(self, server: Server | None = None, quiet: bool = False) -> int | None:
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode

        server = server or self.primary
        q = dns.message.make_query(f"{self.zone}.", "SOA")
        try:
            r = dns.query.udp(q, "127.0.0.1", port=server.port, timeout=0.5)
        except (dns.exception.Timeout, OSError):
            if quiet:
                return None
            raise
        if r.rcode() != dns.rcode.NOERROR or not r.answer:
            return None
        return int(r.answer[0][0].serial)

    def wait_in_sync(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            want = self.soa_serial(self.primary)
            if want is not None and self.soa_serial(self.secondary, quiet=True) == want:
                return
            time.sleep(0.05)
        raise RuntimeError("the secondary did not catch up with the primary")

    def axfr(self, server: Server | None = None, without_serial: bool = True) -> list[str]:
        """The zone's records as sorted text lines (the SOA serial masked unless asked)."""
        import dns.query
        import dns.zone

        server = server or self.primary
        zone = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", f"{self.zone}.", port=server.port, timeout=5,
                                               lifetime=10))
        lines = []
        for name, node in zone.nodes.items():
            for rds in node.rdatasets:
                for rd in rds:
                    text = rd.to_text()
                    if without_serial and rds.rdtype == 6:  # SOA
                        parts = text.split()
                        parts[2] = "SERIAL"
                        text = " ".join(parts)
                    lines.append(f"{name} {rds.ttl} {rds.rdtype.name} {text}")
        return sorted(lines)

    def query(self, name: str, rtype: str = "A", server: Server | None = None, tcp: bool = False) -> tuple[int, list[str]]:
        """(ttl, sorted rdatas) of NAME at one server; (0, []) when absent."""
        import dns.message
        import dns.query

        server = server or self.primary
        fq = name if name.endswith(".") else f"{name}.{self.zone}."
        q = dns.message.make_query(fq, rtype)
        ask = dns.query.tcp if tcp else dns.query.udp
        r = ask(q, "127.0.0.1", port=server.port, timeout=2)
        for rrset in r.answer:
            if rrset.rdtype.name == rtype:
                return rrset.ttl, sorted(rd.to_text() for rd in rrset)
        return 0, []

    def update(self, *changes: tuple[str, str, int, list[str]]) -> None:
        """Change records behind the migrator's back: (name, type, ttl, rdatas); empty rdatas deletes."""
        import dns.query
        import dns.tsigkeyring
        import dns.update

        keyring = dns.tsigkeyring.from_text({self.key_name: self.key_secret})
        msg = dns.update.UpdateMessage(f"{self.zone}.", keyring=keyring, keyname=self.key_name,
                                       keyalgorithm="hmac-sha256")
        for name, rtype, ttl, rdatas in changes:
            if rdatas:
                msg.replace(name, ttl, rtype, *rdatas)
            else:
                msg.delete(name, rtype)
        r = dns.query.tcp(msg, "127.0.0.1", port=self.primary.port, timeout=5)
        assert r.rcode() == 0, r

    def updates_applied(self) -> int:
        """How many dynamic updates the primary applied, from its log (one client connection each)."""
        log = self.primary.dir / "stderr.log"
        text = log.read_text() if log.exists() else ""
        found = (re.search(r"client @(\S+) (\S+?)[/:]", line) for line in text.splitlines() if "updating zone" in line)
        return len({m.groups() for m in found if m})

    # -- for runbooks -------------------------------------------------------------------------------
    def env_dns(self, secret: str = "dns_tsig", resolvers: bool = True, timeout_s: float = 1) -> dict[str, Any]:
        """The runbook's environment.dns section for this pair."""
        z = self.zone
        env: dict[str, Any] = {
            "zone": z,
            "primary": {"host": "127.0.0.1", "port": self.primary.port},
            "tsig": {"name": self.key_name, "algorithm": "hmac-sha256", "secret": secret},
            "nameservers": {f"ns1.{z}": {"host": "127.0.0.1", "port": self.primary.port},
                            f"ns2.{z}": {"host": "127.0.0.1", "port": self.secondary.port}},
            "timeout_s": timeout_s,
        }
        if resolvers:
            env["resolvers"] = [{"host": "127.0.0.1", "port": self.secondary.port}]
        return env

    def write_secret(self, path: Path, value: str | None = None) -> Path:
        path.write_text((value or self.key_secret) + "\n")
        os.chmod(path, 0o600)
        return path


def bogus_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()
