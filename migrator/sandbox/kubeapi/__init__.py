"""A faithful-enough Kubernetes API stand-in (see docs/kube-standin.md for what it does not do)."""

from .launcher import NodeOptions, ServerHandle, kubeconfig_path, spawn, start_server, stop
from .simulator import FAIL_ANNOTATION

__all__ = ["FAIL_ANNOTATION", "NodeOptions", "ServerHandle", "kubeconfig_path", "spawn", "start_server", "stop"]
