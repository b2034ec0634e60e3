"""OpenBao through hvac: clients, KV v2 reads/writes version by version, and value-free digests.

Nothing here logs or returns a secret value in an error: hvac errors are reduced to their class and the
server's error strings (which never echo data), and comparisons go through sha256 digests.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from migrator import redact
from migrator.adapters import resources
from migrator.adapters.lazy import lazy
from migrator.adapters.resources import OPENBAO_SOURCE
from migrator.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    import hvac
    import hvac.exceptions
    import requests
    import requests.adapters

    from migrator.runbook.environment import OpenBaoEndpoint
    from migrator.runbook.model import Runbook
    from migrator.runbook.secrets import SecretResolver

    Resource = Callable[[str, Callable[[], Any]], Any]
else:
    hvac = lazy("hvac")
    requests = lazy("requests")

PLACEHOLDER = {"_migrator": "placeholder for a version destroyed (or unreadable) on the source"}
META_FIELDS = ("max_versions", "cas_required", "delete_version_after", "custom_metadata")
T = TypeVar("T")


# -- clients ---------------------------------------------------------------------------------------
@functools.cache
def _pinned_host_adapter() -> Callable[[str], requests.adapters.HTTPAdapter]:
    """The class is made on first use, so that requests is imported only then."""

    class _PinnedHostAdapter(requests.adapters.HTTPAdapter):
        """Through a tunnel the URL says 127.0.0.1: verify the certificate (and send SNI) for the real name."""

        def __init__(self, hostname: str) -> None:
            self._hostname = hostname
            super().__init__()

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["assert_hostname"] = self._hostname
            kwargs["server_hostname"] = self._hostname
            super().init_poolmanager(*args, **kwargs)

    return _PinnedHostAdapter


def source_tunnel(resource: Resource, runbook: Runbook) -> tuple[str, int] | None:
    """The local end of the SSH tunnel to the source OpenBao (environment.openbao.source_via_ssh), opened
    once per run through the run's shared SSH session; None when the source is reached directly.

    The steps and the secret references ({openbao: ...}) both come this way: once DNS has been cut over,
    the source's public name points at the cluster, so only the tunnel still reaches the VPS's OpenBao."""
    env = runbook.environment.openbao
    hop = env.source_via_ssh if env is not None else None
    if hop is None:
        return None
    src = runbook.environment.source
    if src is None:
        raise PermanentError("environment.openbao.source_via_ssh: the runbook has no environment.source.ssh")
    ssh = resources.ssh_source(resource, runbook)
    return resources.ssh_tunnel(resource, ssh, hop.host, hop.port)


if TYPE_CHECKING:
    BaoClient = hvac.Client  # the client type, named for the steps (which never import hvac)


def token_client(address: str, token: str | None, verify: bool | str, timeout: float = 10) -> hvac.Client:
    """A plain client on `address` with `token` (no tunnel, no retry policy of its own)."""
    return hvac.Client(url=address, token=token, verify=verify, timeout=timeout)


def secrets_client(resource: Resource, runbook: Runbook, secrets: SecretResolver) -> hvac.Client:
    """The client `{openbao: ...}` secret references are read from: the source OpenBao, once per run
    (the engine is handed this function by migrator.commands.common.new_engine)."""
    env = runbook.environment.openbao
    if env is None:
        raise PermanentError("secret from OpenBao: the runbook has no environment.openbao")
    client: hvac.Client = resource(OPENBAO_SOURCE, lambda: client_for(env.source, secrets,
                                                                      via_ssh=source_tunnel(resource, runbook)))
    return client


def client_for(endpoint: OpenBaoEndpoint, secrets: SecretResolver | None,
               via_ssh: tuple[str, int] | None = None, token: str | None = None) -> hvac.Client:
    """An hvac client for `endpoint`, with the token from its named secret (or `token`, already resolved).

    `via_ssh` is the local end of an open SSH tunnel to the endpoint: requests go there, while TLS is
    still verified for the endpoint's own host name."""
    url = endpoint.address.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentError(f"OpenBao address {endpoint.address!r}: expected http(s)://host:port")
    session = requests.Session()
    if via_ssh is not None:
        url = urlunsplit((parts.scheme, f"{via_ssh[0]}:{via_ssh[1]}", parts.path, "", ""))
        if parts.scheme == "https":
            session.mount(url + "/", _pinned_host_adapter()(parts.hostname))
    verify: bool | str = True
    if endpoint.ca_file:
        verify = endpoint.ca_file
    if not endpoint.tls_verify:
        verify = False  # ok: rehearsal only, runbook opt-in
    if token is None and endpoint.token:
        if secrets is None:
            raise PermanentError(f"OpenBao {endpoint.address}: token secret {endpoint.token} but no secrets")
        token = secrets.get(endpoint.token)
    if token:
        redact.register(token)
    return hvac.Client(url=url, token=token, verify=verify, timeout=endpoint.timeout_s, session=session)


def describe_error(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    detail = "; ".join(str(e) for e in errors) if errors else ""
    return redact.redact(f"{exc.__class__.__name__}{': ' + detail if detail else ''}")


@contextmanager
def bao_errors(what: str) -> Iterator[None]:
    """hvac/requests errors as migrator errors: unreachable or sealed is temporary, the rest permanent."""
    try:
        yield
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TemporaryError(f"{what}: OpenBao unreachable ({exc.__class__.__name__})") from None
    except (hvac.exceptions.VaultDown, hvac.exceptions.InternalServerError,
            hvac.exceptions.VaultNotInitialized) as exc:
        raise TemporaryError(f"{what}: {describe_error(exc)}") from None
    except hvac.exceptions.InvalidRequest as exc:
        if "Upgrading from non-versioned to versioned" in str(exc):  # a new KV v2 mount, for a moment
            raise TemporaryError(f"{what}: the KV v2 mount is still upgrading") from None
        raise PermanentError(f"{what}: {describe_error(exc)}") from None
    except hvac.exceptions.Forbidden as exc:
        raise PermanentError(f"{what}: permission denied (check the token's policy): {describe_error(exc)}") from None
    except hvac.exceptions.VaultError as exc:
        raise PermanentError(f"{what}: {describe_error(exc)}") from None


def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with bao_errors(what):
        return fn(*args, **kwargs)


# -- digests ---------------------------------------------------------------------------------------
def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha(obj: Any) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


# -- KV v2 -----------------------------------------------------------------------------------------
def kv2_mounts(client: hvac.Client) -> dict[str, dict[str, Any]]:
    """KV version 2 mounts, name without slash -> mount description."""
    data = call("list secret engines", lambda: client.sys.list_mounted_secrets_engines())["data"]
    return {k.rstrip("/"): v for k, v in data.items()
            if v.get("type") == "kv" and str((v.get("options") or {}).get("version")) == "2"}


def other_mounts(client: hvac.Client) -> tuple[list[str], list[str]]:
    """What kv-copy leaves behind: non-KV-v2 secret engines, and auth methods other than AppRole."""
    skip_engines = {"sys", "identity", "cubbyhole"}
    engines = call("list secret engines", lambda: client.sys.list_mounted_secrets_engines())["data"]
    auths = call("list auth methods", lambda: client.sys.list_auth_methods())["data"]
    kv = set(kv2_mounts(client))
    eng = [f"{k} ({v.get('type')})" for k, v in sorted(engines.items())
           if k.rstrip("/") not in kv and v.get("type") not in skip_engines]
    au = [f"{k} ({v.get('type')})" for k, v in sorted(auths.items()) if v.get("type") not in ("approle", "token")]
    return eng, au


def mount_config(client: hvac.Client, mount: str) -> dict[str, Any]:
    cfg = call(f"read {mount}/config", lambda: client.secrets.kv.v2.read_configuration(mount_point=mount))["data"]
    return {k: cfg.get(k) for k in ("max_versions", "cas_required", "delete_version_after")}


def wait_kv_ready(client: hvac.Client, mount: str, timeout: float = 15) -> None:
    """A freshly enabled KV v2 mount refuses requests while it upgrades: wait (bounded) for it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            mount_config(client, mount)
            return
        except TemporaryError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def set_mount_config(client: hvac.Client, mount: str, cfg: dict[str, Any]) -> None:
    call(f"configure {mount}", lambda: client.secrets.kv.v2.configure(mount_point=mount, **cfg))


def list_paths(client: hvac.Client, mount: str, prefix: str = "") -> list[str]:
    """Every secret path under `mount` (recursive), sorted."""
    with bao_errors(f"list {mount}/{prefix}"):
        try:
            keys = client.secrets.kv.v2.list_secrets(path=prefix, mount_point=mount)["data"]["keys"]
        except hvac.exceptions.InvalidPath:  # 404: an empty mount or folder
            return []
    out: list[str] = []
    for key in keys:
        if key.endswith("/"):
            out += list_paths(client, mount, prefix + key)
        else:
            out.append(prefix + key)
    return sorted(out)


def read_metadata(client: hvac.Client, mount: str, path: str) -> dict[str, Any] | None:
    with bao_errors(f"read metadata {mount}/{path}"):
        try:
            return dict(client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)["data"])
        except hvac.exceptions.InvalidPath:
            return None


def read_version(client: hvac.Client, mount: str, path: str, version: int) -> dict[str, Any] | None:
    """The data of one version; None when it is deleted (or destroyed)."""
    with bao_errors(f"read {mount}/{path} v{version}"):
        try:
            resp = client.secrets.kv.v2.read_secret_version(path=path, version=version, mount_point=mount,
                                                            raise_on_deleted_version=False)
        except hvac.exceptions.InvalidPath:
            return None
    data = (resp.get("data") or {}).get("data")
    return dict(data) if data is not None else None


@dataclass
class Version:
    number: int
    state: str  # live | deleted | destroyed | absent (pruned by max_versions)
    data: dict[str, Any] | None = None  # only when asked for


@dataclass
class SecretDump:
    """One KV path: its metadata and versions (data only when dumped for a copy or a backup)."""

    mount: str
    path: str
    meta: dict[str, Any]
    current_version: int
    versions: list[Version] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.mount}/{self.path}"

    def digest(self) -> str:
        return sha({"meta": self.meta, "current": self.current_version,
                    "versions": {v.number: [v.state, sha(v.data) if v.state == "live" else None]
                                 for v in self.versions}})

    def to_json(self) -> dict[str, Any]:
        return {"mount": self.mount, "path": self.path, "meta": self.meta, "current_version": self.current_version,
                "versions": [[v.number, v.state, v.data] for v in self.versions]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SecretDump:
        return cls(obj["mount"], obj["path"], obj["meta"], obj["current_version"],
                   [Version(n, s, d) for n, s, d in obj["versions"]])


Recover = Callable[[str, int, Callable[[], dict[str, Any] | None]], dict[str, Any] | None]


def dump(client: hvac.Client, mount: str, path: str, recover: Recover | None = None) -> SecretDump | None:
    """Read a path. Live versions are read (for their digest); a deleted version's data is only read
    through `recover` (undelete, read, delete again), which a copy uses and a comparison never does."""
    md = read_metadata(client, mount, path)
    if md is None:
        return None
    meta = {k: md.get(k) for k in META_FIELDS}
    meta["custom_metadata"] = md.get("custom_metadata") or {}
    current = int(md.get("current_version") or 0)
    listed = {int(k): v for k, v in (md.get("versions") or {}).items()}
    out = SecretDump(mount, path, meta, current)
    for n in range(1, current + 1):
        info = listed.get(n)
        if info is None:
            out.versions.append(Version(n, "absent"))
        elif info.get("destroyed"):
            out.versions.append(Version(n, "destroyed"))
        else:
            data = read_version(client, mount, path, n)
            if data is not None:
                out.versions.append(Version(n, "live", data))
            elif recover is not None:
                out.versions.append(Version(n, "deleted", recover(path, n, functools.partial(read_version, client, mount, path, n))))
            else:
                out.versions.append(Version(n, "deleted"))
    return out


def undelete(client: hvac.Client, mount: str, path: str, version: int) -> None:
    call(f"undelete {mount}/{path} v{version}",
         lambda: client.secrets.kv.v2.undelete_secret_versions(path=path, versions=[version], mount_point=mount))


def delete_versions(client: hvac.Client, mount: str, path: str, versions: list[int]) -> None:
    call(f"delete {mount}/{path} v{versions}",
         lambda: client.secrets.kv.v2.delete_secret_versions(path=path, versions=versions, mount_point=mount))


def delete_path(client: hvac.Client, mount: str, path: str) -> None:
    call(f"delete {mount}/{path}",
         lambda: client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=mount))


def write_dump(client: hvac.Client, d: SecretDump) -> None:
    """Write a path version by version so numbers, flags and metadata match; the path must not exist.

    Metadata first, so max_versions prunes the placeholders of pruned versions as it did on the source.
    Every write carries cas=n-1: it lands as version n exactly, or fails (never a silent extra version)."""
    kv = client.secrets.kv.v2
    meta = dict(d.meta)
    call(f"write metadata {d.key}", lambda: kv.update_metadata(path=d.path, mount_point=d.mount, **meta))
    deleted, destroyed = [], []
    for v in d.versions:
        data = v.data if v.state in ("live", "deleted") and v.data is not None else PLACEHOLDER
        call(f"write {d.key} v{v.number}", kv.create_or_update_secret, path=d.path, secret=data,
             cas=v.number - 1, mount_point=d.mount)
        if v.state == "deleted":
            deleted.append(v.number)
        elif v.state == "destroyed":
            destroyed.append(v.number)
    if deleted:
        delete_versions(client, d.mount, d.path, deleted)
    if destroyed:
        call(f"destroy {d.key} v{destroyed}",
             lambda: kv.destroy_secret_versions(path=d.path, versions=destroyed, mount_point=d.mount))


# -- policies and AppRole ----------------------------------------------------------------------------
def policies(client: hvac.Client) -> dict[str, str]:
    names = call("list policies", lambda: client.sys.list_acl_policies())["data"]["keys"]
    return {n: call(f"read policy {n}", client.sys.read_acl_policy, n)["data"]["policy"]
            for n in names if n != "root"}


def approle_mounts(client: hvac.Client) -> list[str]:
    data = call("list auth methods", lambda: client.sys.list_auth_methods())["data"]
    return sorted(k.rstrip("/") for k, v in data.items() if v.get("type") == "approle")


def approle_roles(client: hvac.Client, mount: str) -> dict[str, dict[str, Any]]:
    """role name -> {settings, role_id}. role_id is an identifier, not a credential (secret IDs are)."""
    with bao_errors(f"list {mount} roles"):
        try:
            listed = client.list(f"auth/{mount}/role") or {}
        except hvac.exceptions.InvalidPath:  # 404: no roles yet
            listed = {}
    out = {}
    for name in (listed.get("data") or {}).get("keys", []):
        settings = call(f"read role {name}", client.read, f"auth/{mount}/role/{name}")["data"]
        role_id = call(f"read role-id {name}", client.read, f"auth/{mount}/role/{name}/role-id")
        out[name] = {"settings": {k: ([] if v is None else v) for k, v in settings.items()},
                     "role_id": role_id["data"]["role_id"]}
    return out


def write_role(client: hvac.Client, mount: str, name: str, role: dict[str, Any]) -> None:
    settings = {k: v for k, v in role["settings"].items() if v not in (None, [])}
    call(f"write role {name}", lambda: client.write_data(f"auth/{mount}/role/{name}", data=settings))
    call(f"write role-id {name}", lambda: client.write_data(f"auth/{mount}/role/{name}/role-id",
                                                           data={"role_id": role["role_id"]}))


# -- inventory: what parity means ------------------------------------------------------------------
@dataclass
class Inventory:
    kv: dict[str, str] = field(default_factory=dict)  # mount/path -> digest
    mounts: dict[str, str] = field(default_factory=dict)  # mount -> digest of its KV config
    policies: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # approle-mount/role -> digest

    def differences(self, target: Inventory, allow_extra: bool = False) -> list[str]:
        out = []
        for label, a, b in (("secret", self.kv, target.kv), ("kv mount", self.mounts, target.mounts),
                            ("policy", self.policies, target.policies), ("approle role", self.roles, target.roles)):
            missing = sorted(set(a) - set(b))
            differ = sorted(k for k in set(a) & set(b) if a[k] != b[k])
            extra = [] if allow_extra else sorted(set(b) - set(a))
            out += [f"{label} {k}: missing on target" for k in missing]
            out += [f"{label} {k}: differs" for k in differ]
            out += [f"{label} {k}: only on target" for k in extra]
        return out


def inventory(client: hvac.Client, mounts: list[str], with_policies: bool, with_roles: bool,
              include: Callable[[str, str], bool] | None = None,
              prefix: Callable[[str], str] | None = None) -> Inventory:
    """Digests of the mounts' paths (those `include` selects, listed under `prefix(mount)`)."""
    inv = Inventory()
    present = kv2_mounts(client)
    for mount in mounts:
        if mount not in present:
            continue
        inv.mounts[mount] = sha(mount_config(client, mount))
        for path in list_paths(client, mount, prefix(mount) if prefix else ""):
            if include is not None and not include(mount, path):
                continue
            d = dump(client, mount, path)
            if d is not None:
                inv.kv[d.key] = d.digest()
    if with_policies:
        inv.policies = {n: sha(p) for n, p in policies(client).items()}
    if with_roles:
        for m in approle_mounts(client):
            inv.roles.update({f"{m}/{r}": sha(v) for r, v in approle_roles(client, m).items()})
    return inv


# -- raft and seal -----------------------------------------------------------------------------------
def take_snapshot(client: hvac.Client) -> bytes:
    def get() -> bytes:
        resp = client.sys.take_raft_snapshot()
        if resp.status_code != 200:
            raise PermanentError(f"raft snapshot: HTTP {resp.status_code}")
        return bytes(resp.content)

    return call("raft snapshot", get)


def force_restore(client: hvac.Client, snapshot: bytes) -> None:
    call("raft snapshot-force restore", lambda: client.sys.force_restore_raft_snapshot(snapshot))


def sealed(client: hvac.Client) -> bool:
    return bool(call("seal status", lambda: client.sys.read_seal_status())["sealed"])


def token_valid(client: hvac.Client) -> bool:
    try:
        client.auth.token.lookup_self()
        return True
    except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized, hvac.exceptions.VaultDown):
        return False
    except (requests.ConnectionError, requests.Timeout):
        return False


def unseal_with(client: hvac.Client, keys: list[str], what: str, wait_s: float = 30) -> None:
    """Submit keys until unsealed, then wait (bounded) for the node to become active."""
    for key in keys:
        if not sealed(client):
            break
        try:
            client.sys.submit_unseal_key(key)
        except hvac.exceptions.InvalidRequest:
            # A key from another keyring: OpenBao rejects it. Say which keys without showing them.
            raise PermanentError(f"{what}: the target refused the unseal keys (wrong keyring?)") from None
    if sealed(client):
        raise PermanentError(f"{what}: still sealed after {len(keys)} key(s); the threshold needs more")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            status = client.sys.read_health_status(method="GET")
            if getattr(status, "status_code", 200) == 200 or isinstance(status, dict):
                return
        except (requests.ConnectionError, requests.Timeout, hvac.exceptions.VaultError):
            pass
        time.sleep(0.2)
    raise TemporaryError(f"{what}: unsealed but not active after {wait_s:g}s")
