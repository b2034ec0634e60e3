"""A real S3 server (moto's, threaded, on 127.0.0.1 and a free port) for the backup tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def s3_server() -> Iterator[dict[str, Any]]:
    """moto's S3 server with one bucket; yields its endpoint URL, bucket name and an S3 client on it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test-key",
                              aws_secret_access_key="test-secret")
        client.create_bucket(Bucket="backups")
        yield {"url": url, "bucket": "backups", "client": client}
    finally:
        server.stop()
