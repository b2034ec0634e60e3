"""The node's container runtime: a private dockerd, driven through the Docker SDK (the CRI's part).

One user-defined bridge network (`kube-cluster`, 10.244.0.0/16 unless a route of this host already uses
that, then the next free /16 up to 10.254) is the pod network: every pod's sandbox
("pause") container is attached to it and gets the pod IP; the pod's containers join that container's
network namespace, as on a real node. The bridge's gateway (10.244.0.1) is this process's side of the
network: the cluster DNS listens there. Two nodes in one network namespace (the sandbox's and a test's own)
must not share a subnet: the kernel would route the second node's pods to the first's bridge. Containers are found again by their labels, so a restarted
stand-in adopts what is already running.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NETWORK = "kube-cluster"
SUBNET = "10.244.0.0/16"
GATEWAY = "10.244.0.1"
L_UID, L_NS, L_POD, L_CONTAINER = ("io.kubernetes.pod.uid", "io.kubernetes.pod.namespace", "io.kubernetes.pod.name",
                                   "io.kubernetes.container.name")
L_ATTEMPT, L_ROLE = "io.kubernetes.container.restartCount", "io.sandbox.role"  # role: sandbox | init | app
L_PVC = "io.sandbox.pvc.uid"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_netns_lock = threading.Lock()  # setns is per thread, but keep one entry at a time for clarity


@dataclass
class Exec:
    """A running `docker exec`: the raw hijacked socket (multiplexed stdout/stderr) and its id."""

    id: str
    sock: socket.socket


def _routed_networks(route_table: str = "/proc/net/route") -> list[tuple[int, int]]:
    """(network, mask) of every IPv4 route of this network namespace, as integers."""
    out: list[tuple[int, int]] = []
    try:
        lines = open(route_table).read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        f = line.split()
        if len(f) >= 8:
            dest, mask = (socket.ntohl(int(x, 16)) for x in (f[1], f[7]))
            if mask:  # the default route overlaps everything; it is not a claim on a subnet
                out.append((dest, mask))
    return out


def free_pod_subnet(route_table: str = "/proc/net/route") -> tuple[str, str]:
    """The first of 10.244.0.0/16 .. 10.254.0.0/16 that no route here overlaps: (subnet, gateway)."""
    routed = _routed_networks(route_table)
    for second in range(244, 255):
        net, mask = (10 << 24) | (second << 16), 0xFFFF0000
        if not any((net & m) == (d & m) for d, m in ((d, m & mask) for d, m in routed)):
            return f"10.{second}.0.0/16", f"10.{second}.0.1"
    raise RuntimeError("no free /16 for the pod network in 10.244-10.254: every one is routed already")


class Node:
    def __init__(self, docker_host: str) -> None:
        import docker

        self.docker_host = docker_host
        self.client = docker.DockerClient(base_url=docker_host, timeout=60, max_pool_size=64)
        self.low = self.client.api
        self._images: dict[str, tuple[float, bool]] = {}
        self.gateway = GATEWAY

    # -- set-up ----------------------------------------------------------------------------------------
    def ensure_network(self) -> str:
        """The pod network (created once); returns the gateway address (this side of the bridge)."""
        import docker.errors

        try:
            net = self.client.networks.get(NETWORK)
        except docker.errors.NotFound:
            subnet, gateway = free_pod_subnet()
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet, gateway=gateway)])
            net = self.client.networks.create(NETWORK, driver="bridge", ipam=ipam,
                                              labels={"io.sandbox.cluster": "pod-network"})
        configs = (net.attrs.get("IPAM") or {}).get("Config") or []
        self.gateway = str(configs[0].get("Gateway") or GATEWAY) if configs else GATEWAY
        return self.gateway

    def has_image(self, image: str) -> bool:
        """Cached for 2 s: the kubelet asks for every pod it syncs."""
        import docker.errors

        hit = self._images.get(image)
        if hit is not None and time.monotonic() - hit[0] < 2.0:
            return hit[1]
        try:
            self.low.inspect_image(image)
            found = True
        except docker.errors.ImageNotFound:
            found = False
        except docker.errors.APIError:
            found = False
        self._images[image] = (time.monotonic(), found)
        return found

    def image_id(self, image: str) -> str:
        try:
            return str(self.low.inspect_image(image).get("Id", ""))
        except Exception:
            return ""

    # -- containers ------------------------------------------------------------------------------------
    def list_pod_containers(self, uid: str | None = None) -> list[dict[str, Any]]:
        label = f"{L_UID}={uid}" if uid else L_UID
        return list(self.low.containers(all=True, filters={"label": label}))

    def inspect(self, cid: str) -> dict[str, Any] | None:
        import docker.errors

        try:
            return dict(self.low.inspect_container(cid))
        except docker.errors.NotFound:
            return None

    def create(self, name: str, image: str, *, labels: dict[str, str], entrypoint: list[str] | None,
               command: list[str] | None, env: dict[str, str], working_dir: str | None, user: str | None,
               binds: list[str], network: str | None, hostname: str | None, dns: list[str] | None,
               dns_search: list[str] | None, stdin_open: bool = False) -> str:
        host_config = self.low.create_host_config(
            binds=binds, network_mode=network or "none", dns=dns, dns_search=dns_search,
            dns_opt=["ndots:5"] if dns else None, init=False)
        kwargs: dict[str, Any] = {}
        if network == NETWORK:
            kwargs["networking_config"] = self.low.create_networking_config({NETWORK: self.low.create_endpoint_config()})
        container = self.low.create_container(
            image, command=command, entrypoint=entrypoint, environment=env, working_dir=working_dir or None,
            user=user or "", labels=labels, name=name, host_config=host_config,
            hostname=hostname if network == NETWORK else None, stdin_open=stdin_open, **kwargs)
        return str(container["Id"])

    def start(self, cid: str) -> None:
        self.low.start(cid)

    def remove(self, cid: str, grace: int = 2) -> None:
        import docker.errors

        try:
            self.low.stop(cid, timeout=grace)
        except docker.errors.APIError:
            pass
        try:
            self.low.remove_container(cid, force=True, v=False)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise

    # -- volumes (PVCs and emptyDirs) -------------------------------------------------------------------
    def ensure_volume(self, name: str, labels: dict[str, str], directory: Path | None = None) -> str:
        """A docker volume; with `directory`, one whose storage is that directory of the node (kind's
        local-path provisioner keeps a claim so), which docker still fills from the image on first mount."""
        import docker.errors

        try:
            self.low.inspect_volume(name)
        except docker.errors.NotFound:
            opts = None
            if directory is not None:
                directory.mkdir(parents=True, exist_ok=True)
                opts = {"type": "none", "o": "bind", "device": str(directory)}
            self.low.create_volume(name, driver="local", driver_opts=opts, labels=labels)
        return name

    def remove_volume(self, name: str) -> bool:
        """The volume, and its directory when it is a local-path one."""
        import docker.errors

        try:
            device = ((self.low.inspect_volume(name).get("Options") or {}).get("device"))
            self.low.remove_volume(name, force=True)
            if device:
                shutil.rmtree(device, ignore_errors=True)
            return True
        except docker.errors.NotFound:
            return True
        except docker.errors.APIError:
            return False  # still in use: retried later

    def volumes(self, label: str) -> list[dict[str, Any]]:
        return list((self.low.volumes(filters={"label": label}) or {}).get("Volumes") or [])

    # -- streams ---------------------------------------------------------------------------------------
    def exec(self, cid: str, argv: list[str], stdin: bool, tty: bool = False) -> Exec:
        eid = self.low.exec_create(cid, argv, stdin=stdin, stdout=True, stderr=True, tty=tty)["Id"]
        raw = self.low.exec_start(eid, socket=True, tty=tty)
        sock = getattr(raw, "_sock", raw)
        sock.settimeout(None)
        return Exec(eid, sock)

    def exec_exit_code(self, eid: str, timeout: float = 10.0) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.low.exec_inspect(eid)
            if not info.get("Running"):
                code = info.get("ExitCode")
                return int(code) if code is not None else None
            time.sleep(0.02)
        return None

    def logs(self, cid: str, *, follow: bool, tail: int | None, timestamps: bool,
             since: int | None = None) -> Iterator[bytes]:
        kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "stream": True, "follow": follow,
                                  "timestamps": timestamps, "tail": tail if tail is not None else "all"}
        if since is not None:
            kwargs["since"] = since
        out: Iterator[bytes] = self.low.logs(cid, **kwargs)
        return out

    @contextmanager
    def netns(self, pid: int) -> Iterator[None]:
        """Enter a container's network namespace in this thread (as the CRI does for port-forward)."""
        with _netns_lock:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if _libc.setns(target, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into the network namespace of pid {pid}")
                try:
                    yield
                finally:
                    if _libc.setns(own, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns back to the stand-in's network namespace")
            finally:
                os.close(target)
                os.close(own)

    def connect_in_pod(self, pid: int, port: int, timeout: float = 5.0) -> socket.socket:
        """A TCP connection to localhost:port inside the pod (what kubelet's port-forward opens). A socket
        belongs to the namespace it was created in, so only its creation happens inside."""
        with self.netns(pid):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        sock.settimeout(None)
        return sock

    def close(self) -> None:
        self.client.close()
