"""The run's shared resources: one SSH session to the VPS, its Docker API, one cluster client, tunnels.

A resource is opened on first use through `ctx.resource(key, factory)`: the engine's Session keeps one
object per key for the whole run and closes it (if it has `close()`) when the run ends. Every shared
resource is opened here, under the key named here, so that two steps, or a step and a `{openbao: ...}`
secret reference, asking for the same thing get the same object (two keys, "ssh" and "ssh:source", once
opened two SSH connections to the VPS in one run). Client libraries are imported on first use: a step
module imports this module, and `migrate --help` must not pay for kubernetes or paramiko.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from migrator.adapters.held import Held
from migrator.adapters.kube import KubeCluster
from migrator.errors import PermanentError

if TYPE_CHECKING:
    from migrator.adapters.docker import DockerRemote  # a cycle, as for ssh above
    from migrator.adapters.ssh import SSHSession  # a cycle: ssh.py imports this module for its keys
    from migrator.runbook.environment import PortForward
    from migrator.runbook.model import Runbook

# `ctx.resource` (or Session.resource): the key, and the factory called the first time the key is asked for.
Resource = Callable[[str, Callable[[], Any]], Any]

SSH_SOURCE: Final = "ssh:source"  # the SSH session to the VPS (environment.source.ssh)
DOCKER_SOURCE: Final = "docker:source"  # the VPS's Docker API, over SSH_SOURCE
KUBE: Final = "kube"  # the target cluster's API client (environment.target, or KUBECONFIG)
OPENBAO_SOURCE: Final = "openbao:source"  # the source OpenBao client the secret references read from


def tunnel_key(host: str, port: int) -> str:
    """An SSH tunnel from here to host:port as seen from the VPS."""
    return f"tunnel:{host}:{port}"


def port_forward_key(namespace: str, pod: str, port: int) -> str:
    """A port-forward to a pod through the cluster's API server."""
    return f"port-forward:{namespace}/{pod}:{port}"


def ssh_source(resource: Resource, runbook: Runbook, who: str = "ssh") -> SSHSession:
    """The run's one SSH session to the VPS."""
    source = runbook.environment.source
    if source is None:
        raise PermanentError(f"{who}: the runbook has no environment.source (the VPS)")
    from migrator.adapters.ssh import SSHSession  # a cycle: ssh.py imports this module for its keys

    def opened() -> SSHSession:
        session = SSHSession.from_config(source.ssh, runbook.dir)
        session.via = SSH_SOURCE  # its commands are recorded, and found again through this key (remoteproc)
        return session

    session: SSHSession = resource(SSH_SOURCE, opened)
    return session


def docker_source(resource: Resource, runbook: Runbook, who: str = "docker") -> DockerRemote:
    """The run's Docker API of the VPS, over the run's SSH session."""
    from migrator.adapters.docker import DockerRemote  # a cycle, as for ssh above

    ssh = ssh_source(resource, runbook, who)
    source = runbook.environment.source
    assert source is not None  # ssh_source refused a runbook without one
    def opened() -> DockerRemote:
        remote = DockerRemote.from_config(source, runbook.dir, ssh)
        remote.via = DOCKER_SOURCE  # its execs are recorded, and found again through this key (remoteproc)
        return remote

    remote: DockerRemote = resource(DOCKER_SOURCE, opened)
    return remote


def kube(resource: Resource, runbook: Runbook) -> KubeCluster:
    """The run's one API client of the target cluster."""
    cluster: KubeCluster = resource(KUBE, lambda: KubeCluster(runbook.environment.target, runbook.dir))
    return cluster


def ssh_tunnel(resource: Resource, ssh: SSHSession, host: str, port: int) -> tuple[str, int]:
    """The local end of the run's one SSH tunnel to host:port (as seen from the VPS)."""
    held = resource(tunnel_key(host, port), lambda: Held(ssh.tunnel(host, port)))
    return held.value  # type: ignore[no-any-return]


def port_forward(resource: Resource, cluster: KubeCluster, namespace: str, pod: str, port: int) -> tuple[str, int]:
    """The local end of the run's one port-forward to a pod's port."""
    held = resource(port_forward_key(namespace, pod, port), lambda: Held(cluster.port_forward(namespace, pod, port)))
    return held.value  # type: ignore[no-any-return]


def forwarded(resource: Resource, runbook: Runbook, forward: PortForward | None) -> tuple[str, int] | None:
    """The local end of the run's port-forward for an HTTP endpoint (OpenBao, Keycloak) when the runbook
    gives one; None when `url` is reached directly. Opened on first use, closed when the run ends."""
    if forward is None:
        return None
    cluster = kube(resource, runbook)
    who = forward.pod or ",".join(f"{k}={v}" for k, v in sorted((forward.selector or {}).items()))
    key = port_forward_key(forward.namespace, who, forward.port)
    held = resource(key, lambda: Held(cluster.port_forward(forward.namespace, forward.pod, forward.port,
                                                           forward.selector)))
    return held.value  # type: ignore[no-any-return]
