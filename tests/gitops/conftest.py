"""The stand-in fixture of tests/kube, shared."""

from tests.kube.conftest import kubeapi  # noqa: F401
