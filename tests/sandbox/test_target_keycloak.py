"""The target Keycloak: the Keycloak stand-in as a host process on 127.0.0.1:28080, configured by an env
file whose change (KC_HOSTNAME, rewritten the way the migrator's keycloak.migrate step does) it picks up by
itself, and reachable through the cluster ingress as the `infra/keycloak` Service's backend."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator.sandbox import seed_sql, target_keycloak
from migrator.sandbox.layout import TARGET_KEYCLOAK_PORT, TARGET_PG_PORTS
from migrator.sandbox.platform import SandboxInfo
from migrator.sandbox.proc import alive

from .helpers import env_of, paths_of

pytestmark = pytest.mark.sandbox
REALM = "sevensa"
DISCOVERY = f"/realms/{REALM}/.well-known/openid-configuration"


def _get(url: str, host: str | None = None, timeout: float = 10) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - loopback
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"null")
        except ValueError:
            return e.code, raw.decode(errors="replace")


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _listeners(port: int) -> list[str]:
    """Local addresses of the listening TCP sockets on ``port`` (IPv4 and IPv6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:
                found.append(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]) if len(addr) == 8
                             else addr)
    return found


def _set_hostname(path: Path, value: str) -> None:
    """What keycloak.migrate's env-file setter does: rewrite the KEY=value line, atomically, keep the mode."""
    lines = [line for line in path.read_text().splitlines() if not line.startswith("KC_HOSTNAME=")]
    lines.insert(0, f"KC_HOSTNAME={value}")
    tmp = path.with_name(path.name + ".test-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def _hostname(path: Path) -> str:
    return next(line.split("=", 1)[1] for line in path.read_text().splitlines() if line.startswith("KC_HOSTNAME="))


def _wait_issuer(url: str, want: str, timeout: float = 8.0, host: str | None = None) -> float:
    t0 = time.monotonic()
    last: Any = None
    while time.monotonic() - t0 < timeout:
        try:
            status, doc = _get(url + DISCOVERY, host, timeout=5)
            last = (status, doc)
            if status == 200 and doc.get("issuer") == want:
                return time.monotonic() - t0
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"issuer never became {want} within {timeout}s; last answer {last}")


@pytest.fixture
def target_db(sandbox: SandboxInfo) -> Iterator[None]:
    """A `keycloak` database on the target Postgres for keycloak, seeded like the source's (as if the
    migrator had copied it); dropped afterwards unless it was there before (then left as found)."""
    env = env_of(sandbox)
    port = TARGET_PG_PORTS["keycloak"]
    conninfo = {"host": "127.0.0.1", "port": port, "user": "postgres", "password": env["TARGET_PG_PASSWORD"],
                "connect_timeout": 5}
    with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:  # type: ignore[arg-type]
        existed = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'keycloak'").fetchone() is not None
        if not existed:
            conn.execute("CREATE DATABASE keycloak")
    try:
        if not existed:
            subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
                            "-U", "postgres", "-d", "keycloak"],
                           input=seed_sql.keycloak(1, env["MIGRATOR_SMOKE_CLIENT_SECRET"]).encode(),
                           env={**os.environ, "PGPASSWORD": env["TARGET_PG_PASSWORD"]}, capture_output=True,
                           check=True, timeout=120)
        yield
    finally:
        if not existed:
            with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:  # type: ignore[arg-type]
                conn.execute("DROP DATABASE IF EXISTS keycloak WITH (FORCE)")


def test_target_keycloak_runs_on_loopback_only(sandbox: SandboxInfo) -> None:
    comp = sandbox.components["target-keycloak"]
    assert comp["running"] and comp["url"] == f"http://127.0.0.1:{TARGET_KEYCLOAK_PORT}"
    pid = comp["pid"]
    assert alive(pid)
    facts = sandbox.facts["keycloak"]
    target = facts["target"]
    assert target["url"] == "http://127.0.0.1:28080" and target["hostname_key"] == "KC_HOSTNAME"
    env_file = Path(target["env_file"])
    assert env_file == paths_of(sandbox).target_keycloak_env and env_file.exists()
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert facts["source"]["url"] == "http://127.0.0.10:18080" and facts["source"]["host_header"] == "auth.sevensa.test"
    # listening on 127.0.0.1:28080 only
    assert _listeners(TARGET_KEYCLOAK_PORT) == ["127.0.0.1"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", TARGET_KEYCLOAK_PORT), timeout=1).close()
    status, body = _get(target["url"] + "/version")
    assert status == 200 and body["service"] == "keycloak"
    # the env file's path is in argv, its secrets are not
    cmd = _cmdline(pid)
    assert str(env_file) in cmd
    env = env_of(sandbox)
    for key in ("TARGET_PG_PASSWORD", "KEYCLOAK_ADMIN_PASSWORD", "KEYCLOAK_DB_PASSWORD"):
        assert env[key] not in cmd, key
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
                  and not line.startswith("#"))
    assert values["KC_DB_URL_HOST"] == "127.0.0.1" and values["KC_DB_URL_PORT"] == "25435"
    assert values["KC_DB_URL_DATABASE"] == "keycloak" and values["KC_DB_USERNAME"] == "postgres"
    assert values["KC_DB_PASSWORD"] == env["TARGET_PG_PASSWORD"]
    assert values["KC_BOOTSTRAP_ADMIN_USERNAME"] == env["KEYCLOAK_ADMIN_USER"]
    assert values["KC_BOOTSTRAP_ADMIN_PASSWORD"] == env["KEYCLOAK_ADMIN_PASSWORD"]
    assert values["KC_HOSTNAME"]  # keycloak.infra.svc.cluster.local until a migration rewrites it


def test_hostname_change_is_picked_up_without_a_signal(sandbox: SandboxInfo, target_db: None) -> None:
    url = sandbox.facts["keycloak"]["target"]["url"]
    env_file = Path(sandbox.facts["keycloak"]["target"]["env_file"])
    pid = sandbox.components["target-keycloak"]["pid"]
    before = _hostname(env_file)
    _wait_issuer(url, f"http://{before}/realms/{REALM}")
    other = "auth.sevensa.test" if before != "auth.sevensa.test" else target_keycloak.INITIAL_HOSTNAME
    try:
        _set_hostname(env_file, other)
        took = _wait_issuer(url, f"http://{other}/realms/{REALM}")
        assert took < 5, took
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert target_keycloak.running(paths_of(sandbox)) == pid  # re-executed in place: same pid
        # the admin is the source's: a master-realm password grant works against the copied database
        env = env_of(sandbox)
        form = (f"grant_type=password&client_id=admin-cli&username={env['KEYCLOAK_ADMIN_USER']}"
                f"&password={env['KEYCLOAK_ADMIN_PASSWORD']}").encode()
        req = urllib.request.Request(url + "/realms/master/protocol/openid-connect/token", data=form)
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
            assert r.status == 200 and json.loads(r.read())["access_token"]
    finally:
        if _hostname(env_file) == other:  # put it back, unless someone (a rehearsal) has set it meanwhile
            _set_hostname(env_file, before)
    if _hostname(env_file) == before:
        _wait_issuer(url, f"http://{before}/realms/{REALM}")
    assert target_keycloak.running(paths_of(sandbox)) == pid


def test_cluster_ingress_proxies_auth_to_target_keycloak(sandbox: SandboxInfo, target_db: None) -> None:
    """auth.sevensa.test through the cluster ingress reaches the real target Keycloak once the cluster has a
    ready infra/keycloak (created here, in a namespace of its own making, when a rehearsal has not)."""
    kubeconfig = sandbox.facts["kube"]["kubeconfig"]
    if not kubeconfig:
        pytest.skip("no kube API stand-in in this sandbox")
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig)
    core, apps, net = client.CoreV1Api(api), client.AppsV1Api(api), client.NetworkingV1Api(api)
    created = False
    if any(n.metadata.name == "infra" for n in core.list_namespace().items):
        if not any(s.metadata.name == "keycloak" for s in core.list_namespaced_service("infra").items):
            pytest.skip("the cluster has an infra namespace without the keycloak Service")
    else:
        labels = {"app": "keycloak"}
        core.create_namespace({"metadata": {"name": "infra", "labels": {"sandbox.migrator/test": "1"}}})
        created = True
        core.create_namespaced_service("infra", {"metadata": {"name": "keycloak"}, "spec": {
            "selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}})
        apps.create_namespaced_deployment("infra", {"metadata": {"name": "keycloak", "labels": labels}, "spec": {
            "replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [{"name": "keycloak", "image": "quay.io/keycloak/keycloak:26.0.5"}]}}}})
        net.create_namespaced_ingress("infra", {"metadata": {"name": "keycloak"}, "spec": {"rules": [{
            "host": "auth.sevensa.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": "keycloak", "port": {"number": 80}}}}]}}]}})
    try:
        ing = sandbox.facts["kube"]["ingress"]
        ingress_url = f"http://{ing['host']}:{ing['port']}"
        hostname = _hostname(Path(sandbox.facts["keycloak"]["target"]["env_file"]))
        _wait_issuer(ingress_url, f"http://{hostname}/realms/{REALM}", timeout=15, host="auth.sevensa.test")
        status, body = _get(ingress_url + "/admin/realms", "auth.sevensa.test")
        assert status == 401 and body == {"error": "HTTP 401 Unauthorized"}  # Keycloak's answer, not the ingress's
    finally:
        if created:
            core.delete_namespace("infra")
