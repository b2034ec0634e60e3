"""The cluster's node: a second private dockerd (same recipe as the VPS's) on which the Kubernetes API
stand-in runs the pods, with the sandbox's own images loaded into it (`docker save | docker load`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .dockerd import docker_cli, docker_env, start_daemon
from .layout import IMAGE_BASE, IMAGE_POSTGRES, IMAGE_STANDIN, Paths
from .proc import Log, SandboxError, pid_alive, stop_pid

#: the images a pod can use (no registry answers: nothing else can ever be pulled onto the node). OpenBao's
#: (132 MB) is left out until a pod needs it: loading it would add to every `sandbox up`.
NODE_IMAGES = (IMAGE_BASE, IMAGE_POSTGRES, IMAGE_STANDIN)


def env_for(docker_host: str, root: Path) -> dict[str, str]:
    return {"DOCKER_HOST": docker_host, "DOCKER_CONFIG": str(root / "config"), "DOCKER_BUILDKIT": "0"}


def start(paths: Paths, log: Log) -> None:
    start_daemon("node dockerd", paths.node, paths.node_docker_host, paths.node_pid, paths.logs / "node-dockerd.log",
                 log)


def running(paths: Paths) -> int | None:
    return pid_alive(paths.node_pid, "dockerd")


def _image_ids(env: dict[str, str], images: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for image in images:
        cp = subprocess.run([docker_cli(), "image", "inspect", "--format", "{{.Id}}", image], env={**os.environ, **env},
                            capture_output=True, timeout=30, check=False)
        if cp.returncode == 0:
            out[image] = cp.stdout.decode().strip()
    return out


def load_images(source_env: dict[str, str], node_env: dict[str, str], log: Log,
                images: tuple[str, ...] = NODE_IMAGES) -> None:
    """Copy the images from the daemon that built them into the node, unless the node has the same ids."""
    have, want = _image_ids(node_env, images), _image_ids(source_env, images)
    missing = [i for i in images if i in want and have.get(i) != want[i]]
    if not missing:
        log("node: images up to date")
        return
    save = subprocess.Popen([docker_cli(), "save", *missing], env={**os.environ, **source_env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        load = subprocess.run([docker_cli(), "load", "--quiet"], env={**os.environ, **node_env}, stdin=save.stdout,
                              capture_output=True, timeout=300, check=False)
    finally:
        assert save.stdout is not None
        save.stdout.close()
        save_err = save.stderr.read() if save.stderr else b""
        save.wait(timeout=60)
    if save.returncode != 0 or load.returncode != 0:
        raise SandboxError(f"loading {', '.join(missing)} into the node failed: "
                           f"{(save_err + load.stderr).decode(errors='replace')[-500:]}")
    log(f"node: loaded {', '.join(missing)}")


def up(paths: Paths, log: Log) -> None:
    """Load the sandbox's images (built in the VPS dockerd) into the running node dockerd."""
    load_images(docker_env(paths), env_for(paths.node_docker_host, paths.node), log)


def stop(paths: Paths) -> None:
    pid = running(paths)
    if pid is not None:
        stop_pid(pid, timeout=20)
    paths.node_pid.unlink(missing_ok=True)
