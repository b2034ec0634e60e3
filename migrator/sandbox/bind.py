"""DNS: a real BIND 9 primary (ns1) for zone sevensa.test accepting TSIG-signed RFC 2136 updates, and a
real secondary (ns2) that transfers the zone by AXFR on NOTIFY from the primary (``also-notify``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring

from .layout import (
    DNS_PRIMARY_HOST,
    DNS_PRIMARY_PORT,
    DNS_SECONDARY_HOST,
    DNS_SECONDARY_PORT,
    DNS_TTL,
    DNS_ZONE,
    NS1_ADDRESS,
    NS2_ADDRESS,
    PUBLIC_HOSTS,
    TSIG_KEY_NAME,
    VPS_ADDRESS,
    Paths,
)
from .proc import Log, SandboxError, pid_alive, run, spawn, stop_pid_file, wait_until

NAMED = "/usr/sbin/named"
TSIG_KEYGEN = "/usr/sbin/tsig-keygen"
NAMED_CHECKCONF = "/usr/bin/named-checkconf"
ALGORITHM = "hmac-sha256"


def server_dir(paths: Paths, role: str) -> Path:
    return paths.dns / role


def pid_file(paths: Paths, role: str) -> Path:
    return server_dir(paths, role) / "named.pid"


def read_tsig_key(path: Path) -> tuple[str, str, str]:
    """(name, algorithm, base64 secret) from a BIND key file written by tsig-keygen."""
    from migrator.runbook.tsig import DEFAULT_ALGORITHM, TSIGKeyError, parse_keys

    try:
        key = parse_keys(path.read_text())[0]
    except TSIGKeyError as exc:
        raise SandboxError(f"cannot parse TSIG key file {path}: {exc}") from None
    if key.name is None:
        raise SandboxError(f"TSIG key file {path} has no key name")
    return key.name, key.algorithm or DEFAULT_ALGORITHM, key.secret


def keyring(paths: Paths) -> dict[dns.name.Name, dns.tsig.Key]:
    name, algorithm, secret = read_tsig_key(paths.tsig_key_file)
    return {dns.name.from_text(name): dns.tsig.Key(name, secret, algorithm)}


def zone_text(serial: int) -> str:
    lines = [
        f"$ORIGIN {DNS_ZONE}.",
        f"$TTL {DNS_TTL}",
        f"@ IN SOA ns1.{DNS_ZONE}. hostmaster.{DNS_ZONE}. ( {serial} 300 60 604800 300 )",
        f"@ IN NS ns1.{DNS_ZONE}.",
        f"@ IN NS ns2.{DNS_ZONE}.",
        f"ns1 IN A {NS1_ADDRESS}",
        f"ns2 IN A {NS2_ADDRESS}",
        f"@ IN A {VPS_ADDRESS}",
        f"www IN A {VPS_ADDRESS}",
        '@ IN TXT "sevensa sandbox zone"',
    ]
    lines += [f"{host} IN A {VPS_ADDRESS}" for host in PUBLIC_HOSTS]
    return "\n".join(lines) + "\n"


def _options(d: Path, port: int, host: str) -> list[str]:
    return [
        "options {",
        f'  directory "{d}";',
        f'  pid-file "{d / "named.self.pid"}";',
        f'  session-keyfile "{d / "session.key"}";',
        f'  managed-keys-directory "{d}";',
        f"  listen-on port {port} {{ {host}; }};",
        "  listen-on-v6 { none; };",
        "  recursion no;",
        "  dnssec-validation no;",
        "  minimal-responses yes;",
    ]


def write_configs(paths: Paths) -> None:
    paths.dns.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.dns, 0o700)
    if not paths.tsig_key_file.exists():
        cp = run([TSIG_KEYGEN, "-a", ALGORITHM, TSIG_KEY_NAME])
        fd = os.open(paths.tsig_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(cp.stdout)
    secret_env = paths.dns / "tsig.env"
    if not secret_env.exists():
        # The same key as KEY=value, for the runbook's secret reference ({file: ..., key: TSIG_SECRET}).
        secret = read_tsig_key(paths.tsig_key_file)[2]
        fd = os.open(secret_env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"TSIG_SECRET={secret}\n")
    primary, secondary = server_dir(paths, "primary"), server_dir(paths, "secondary")
    primary.mkdir(exist_ok=True)
    secondary.mkdir(exist_ok=True)
    zone_file = primary / f"{DNS_ZONE}.zone"
    if not zone_file.exists():
        zone_file.write_text(zone_text(int(time.strftime("%Y%m%d01"))))
    (primary / "named.conf").write_text("\n".join([
        f'include "{paths.tsig_key_file}";',
        *_options(primary, DNS_PRIMARY_PORT, DNS_PRIMARY_HOST),
        "  notify explicit;",
        f"  also-notify {{ {DNS_SECONDARY_HOST} port {DNS_SECONDARY_PORT}; }};",
        f"  notify-source {DNS_PRIMARY_HOST};",
        f"  allow-transfer {{ {DNS_SECONDARY_HOST}; key {TSIG_KEY_NAME}; }};",
        "};",
        "controls { };",
        f'zone "{DNS_ZONE}" {{',
        "  type primary;",
        f'  file "{zone_file}";',
        f"  update-policy {{ grant {TSIG_KEY_NAME} zonesub ANY; }};",
        "};",
        "",
    ]))
    (secondary / "named.conf").write_text("\n".join([
        f'include "{paths.tsig_key_file}";',
        *_options(secondary, DNS_SECONDARY_PORT, DNS_SECONDARY_HOST),
        "  notify no;",
        f"  transfer-source {DNS_SECONDARY_HOST};",
        "  allow-transfer { none; };",
        "};",
        "controls { };",
        f'zone "{DNS_ZONE}" {{',
        "  type secondary;",
        f'  file "{secondary / (DNS_ZONE + ".bk")}";',
        f"  primaries {{ {DNS_PRIMARY_HOST} port {DNS_PRIMARY_PORT}; }};",
        "};",
        "",
    ]))
    for d in (primary, secondary):
        run([NAMED_CHECKCONF, d / "named.conf"])


def soa_serial(host: str, port: int) -> int | None:
    q = dns.message.make_query(f"{DNS_ZONE}.", dns.rdatatype.SOA)
    try:
        r = dns.query.udp(q, host, port=port, timeout=1)
    except (OSError, dns.exception.DNSException):
        return None
    for rrset in r.answer:
        for rd in rrset:
            return int(rd.serial)
    return None


def running(paths: Paths, role: str) -> int | None:
    return pid_alive(pid_file(paths, role), "named")


def start(paths: Paths, log: Log) -> None:
    write_configs(paths)
    for role, host, port in (("primary", DNS_PRIMARY_HOST, DNS_PRIMARY_PORT),
                             ("secondary", DNS_SECONDARY_HOST, DNS_SECONDARY_PORT)):
        if running(paths, role) is None:
            pid = spawn([NAMED, "-g", "-4", "-c", server_dir(paths, role) / "named.conf"],
                        pid_file=pid_file(paths, role), log_file=paths.logs / f"named-{role}.log")
            log(f"bind {role}: named started on {host}:{port} (pid {pid})")
        else:
            log(f"bind {role}: already running")
    wait_until("bind primary", lambda: soa_serial(DNS_PRIMARY_HOST, DNS_PRIMARY_PORT) is not None, 15)
    wait_until("bind secondary has the zone (AXFR)",
               lambda: soa_serial(DNS_SECONDARY_HOST, DNS_SECONDARY_PORT)
               == soa_serial(DNS_PRIMARY_HOST, DNS_PRIMARY_PORT), 30, 0.1)
    log(f"bind: zone {DNS_ZONE} served by ns1 {DNS_PRIMARY_HOST}:{DNS_PRIMARY_PORT} "
        f"and ns2 {DNS_SECONDARY_HOST}:{DNS_SECONDARY_PORT}")


def stop(paths: Paths) -> None:
    for role in ("secondary", "primary"):
        stop_pid_file(pid_file(paths, role), exe_hint="named", timeout=10)
