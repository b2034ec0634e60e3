"""Params shared by the postgres.* step types, and how they turn into a source and a target.

The source is read where it lives (docker exec in its container on the VPS, or a local pg tool for an
endpoint reachable from here); the target is a server reached through environment.target.endpoints
(the sandbox) or a port-forward (a real cluster: provided by the kube adapter).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from migrator.adapters import resources
from migrator.adapters.docker import remote_for
from migrator.adapters.pgsource import PgSource
from migrator.adapters.postgres import PgConn
from migrator.adapters.ssh import session_for
from migrator.errors import PermanentError
from migrator.steps.base import StepContext, StrictModel


class SourceParams(StrictModel):
    container: str | None = None  # compose service or container name on the VPS: read by docker exec
    endpoint: str | None = None  # or a name in environment.target.endpoints (direct access)
    host: str | None = None  # or a host:port reachable from here (tests, bench)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str
    user: str = "postgres"
    password: str | None = None  # ${secrets.NAME}; inside a container the unix socket usually trusts
    socket_dir: str = "/var/run/postgresql"
    os_user: str = "postgres"  # the OS user docker exec runs the pg tools as
    # How a container's COPY streams are compressed on their way out: auto = zstd if the container has
    # it, else gzip, else none.
    compression: Literal["auto", "zstd", "gzip", "none"] = "auto"
    # Replication: where the VPS reaches this server (default: the container's address on its network).
    replication_host: str | None = None
    replication_port: int = Field(default=5432, ge=1, le=65535)

    @model_validator(mode="after")
    def _one_way(self) -> SourceParams:
        given = [k for k in ("container", "endpoint", "host") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of container, endpoint, host")
        return self


class TargetParams(StrictModel):
    endpoint: str  # a name in environment.target.endpoints
    database: str
    user: str = "postgres"
    password: str | None = None


class DbParams(StrictModel):
    source: SourceParams
    target: TargetParams
    owner_map: dict[str, str] = Field(default_factory=dict)  # source role -> target role
    default_owner: str | None = None  # for source roles not in owner_map (else they must exist)
    create_roles: bool = True  # create missing target roles (NOLOGIN: passwords are managed elsewhere)


def _source_env(ctx: StepContext) -> Any:
    env = ctx.runbook.environment.source
    if env is None:
        raise PermanentError(f"{ctx.step_id}: source.container needs environment.source (the VPS) in the runbook")
    return env


def ssh_session(ctx: StepContext) -> Any:
    _source_env(ctx)
    return session_for(ctx)


def docker_remote(ctx: StepContext) -> Any:
    _source_env(ctx)
    return remote_for(ctx)


def container_of(ctx: StepContext, name: str) -> Any:
    """The container for a compose service name (or a container name) in the runbook's project."""
    remote = docker_remote(ctx)
    project = _source_env(ctx).compose_project

    def find() -> Any:
        found = remote.require_project(project)
        for c in found:
            if c.labels.get("com.docker.compose.service") == name or c.name == name:
                return c
        names = sorted(c.labels.get("com.docker.compose.service", c.name) for c in found)
        raise PermanentError(f"no container {name!r} in compose project {project!r} (there: {', '.join(names)})")

    return ctx.resource(f"container:{project}:{name}", find)


def endpoint_address(ctx: StepContext, name: str, default_port: int = 5432) -> tuple[str, int]:
    """Host and port of a data-plane endpoint, as reachable from this machine (every data store of the
    cluster is reached this way: Postgres, MySQL, Redis; `default_port` is the server's port in its pod)."""
    target = ctx.runbook.environment.target
    if target is None or name not in target.endpoints:
        known = ", ".join(sorted(target.endpoints)) if target else ""
        raise PermanentError(f"{ctx.step_id}: no endpoint {name!r} in environment.target.endpoints"
                             + (f" (known: {known})" if known else ""))
    ep = target.endpoints[name]
    if target.data_access == "endpoint":
        return ep.host, ep.port
    # A real cluster: a port-forward to the pod through the API server (the kube adapter's relay).
    if not ep.namespace or not ep.pod:
        raise PermanentError(f"{ctx.step_id}: endpoint {name} needs namespace and pod for "
                             f"data_access={target.data_access}")
    kube = resources.kube(ctx.resource, ctx.runbook)
    return resources.port_forward(ctx.resource, kube, ep.namespace, ep.pod, ep.remote_port or default_port)


def target_conn(ctx: StepContext, t: TargetParams, database: str | None = None) -> PgConn:
    host, port = endpoint_address(ctx, t.endpoint)
    return PgConn(host, port, t.user, database or t.database, t.password)


def source_of(ctx: StepContext, s: SourceParams) -> PgSource:
    if s.container:
        container = container_of(ctx, s.container)
        # One per container, database and user for the whole run: it keeps a psql open in the container,
        # which the engine closes with the run's other resources.
        key = f"pgsource:{container.name}:{s.database}:{s.user}:{s.os_user}"
        return ctx.resource(key, lambda: PgSource.container(docker_remote(ctx), container.name, s.database,  # type: ignore[no-any-return]
                                                            s.user, s.password, s.socket_dir, s.os_user,
                                                            None if s.compression == "none" else s.compression))
    if s.endpoint:
        host, port = endpoint_address(ctx, s.endpoint)
    else:
        host, port = str(s.host), s.port
    return PgSource.local(PgConn(host, port, s.user, s.database, s.password))


def replication_address(ctx: StepContext, s: SourceParams) -> tuple[str, int]:
    """Where the target server can reach the source to subscribe.

    A container source is reached through an SSH tunnel whose local end is on this machine: that works
    when the target server runs here too (the sandbox). On a real cluster the subscriber runs in a pod,
    which cannot reach this machine's 127.0.0.1; there the runbook must give a path (replication_host).
    """
    if not s.container:
        if s.endpoint:
            return endpoint_address(ctx, s.endpoint)
        return str(s.host), s.port
    host = s.replication_host
    if host is None:
        container = container_of(ctx, s.container)
        nets = container.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
        addrs = [n.get("IPAddress") for n in nets.values() if n.get("IPAddress")]
        if not addrs:
            raise PermanentError(f"{ctx.step_id}: container {s.container} has no network address; "
                                 "set source.replication_host")
        host = str(addrs[0])
    ssh = ssh_session(ctx)
    port = s.replication_port
    return resources.ssh_tunnel(ctx.resource, ssh, host, port)
