"""The S3 store against moto's server with authentication on (so the SigV4 signer is checked): put, stat,
fetch, list, delete; a wrong secret is refused. (AWS also refuses a body that does not match its signed
x-amz-content-sha256; moto does not check that, so it is not proven here.)"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import PermanentError


def test_put_stat_fetch_list_delete(s3_server: dict[str, Any], tmp_path: Path) -> None:
    store = s3_server["store"]("sevensa/pre cutover")  # a space: the signer must encode the path as S3 does
    blob = tmp_path / "dump"
    blob.write_bytes(os.urandom(3_000_000))
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    assert store.stat("a/dump+1") is None
    store.put("a/dump+1", blob, digest)
    store.put_bytes("a/backup.json", b"{}", hashlib.sha256(b"{}").hexdigest())
    st = store.stat("a/dump+1")
    assert st is not None and (st.size, st.sha256) == (3_000_000, digest)
    store.fetch("a/dump+1", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == blob.read_bytes()
    assert sorted(store.keys("a")) == ["a/backup.json", "a/dump+1"]
    store.delete("a/dump+1")
    assert store.stat("a/dump+1") is None and store.keys("a") == ["a/backup.json"]


def test_a_wrong_secret_is_refused_and_not_shown(s3_server: dict[str, Any]) -> None:
    bad = s3_server["store"]("x", secret_access_key="not-the-secret-" + "c4n4ry")
    with pytest.raises(PermanentError, match="HTTP 403 SignatureDoesNotMatch") as err:
        bad.put_bytes("k", b"data", hashlib.sha256(b"data").hexdigest())
    assert "c4n4ry" not in str(err.value)
    assert s3_server["store"]("x").stat("k") is None
