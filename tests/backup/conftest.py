"""A real S3 server (moto's, in its own venv `.venv-s3` made by scripts/setup.sh) on 127.0.0.1, with
SigV4 authentication on: a request our signer got wrong is refused, as AWS would."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from migrator.adapters.objectstore import S3Store
from tests.kube.conftest import kubeapi  # noqa: F401 - the API stand-in, for test_velero
from tests.util import REPO

MOTO_PYTHON = REPO / ".venv-s3" / "bin" / "python"


@pytest.fixture
def s3_server() -> Iterator[dict[str, Any]]:
    """url, bucket, access_key_id, secret_access_key (issued by moto's IAM), and `store(prefix)`."""
    if not MOTO_PYTHON.exists():
        pytest.fail(f"{MOTO_PYTHON} is missing: run scripts/setup.sh (it makes moto's venv)")
    proc = subprocess.Popen([str(MOTO_PYTHON), str(REPO / "tests" / "backup" / "s3server.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"moto's S3 server did not start (exit {proc.wait(timeout=30)})")
        info: dict[str, Any] = json.loads(line)

        def store(prefix: str = "", **changes: Any) -> S3Store:
            args = {"bucket": info["bucket"], "prefix": prefix, "endpoint_url": info["url"], "region": "us-east-1",
                    "access_key_id": info["access_key_id"], "secret_access_key": info["secret_access_key"]}
            return S3Store(**{**args, **changes})

        info["store"] = store
        yield info
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
