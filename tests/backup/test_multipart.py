"""Multipart upload to moto's S3 server (authentication on), with 5 MiB parts (S3's smallest) so a 13 MiB file
takes three: the object round-trips byte for byte; a process SIGKILLed after its second part leaves no
object (only unlisted parts) and the resume sends only the third; a permanent error aborts the upload."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from migrator.adapters import s3multipart
from migrator.adapters.objectstore import S3Store
from migrator.errors import PermanentError
from tests.openbao.test_canary import ArgvScanner
from tests.util import REPO, migrate, write_runbook

MIB = 1 << 20
PART = 5 * MIB


class Log:
    """The step's role: keeps the upload id (here in a file), counts the parts sent."""

    def __init__(self, path: Path, fail_after: int | None = None) -> None:
        self.path, self.fail_after, self.sent = path, fail_after, []  # type: ignore[var-annotated]

    def get(self, key: str, sha256: str) -> str | None:
        doc = json.loads(self.path.read_text()) if self.path.exists() else {}
        return doc.get("id") if doc.get("key") == key and doc.get("sha256") == sha256 else None

    def started(self, key: str, sha256: str, upload_id: str) -> None:
        self.path.write_text(json.dumps({"key": key, "sha256": sha256, "id": upload_id}))

    def part_done(self, number: int) -> None:
        self.sent.append(number)
        if number == self.fail_after:
            raise PermanentError("stop here")


# Run in a child: puts the file with a log that SIGKILLs the process once part 2 is sent. The S3 settings
# (the secret among them) come on stdin, never argv.
CHILD = """
import json, os, signal, sys
from pathlib import Path
from migrator.adapters.objectstore import S3Store
from tests.backup.test_multipart import Log
cfg = json.loads(sys.stdin.read())
class Kill(Log):
    def part_done(self, number):
        if number == 2:
            os.kill(os.getpid(), signal.SIGKILL)
store = S3Store(**cfg["store"])
store.put(cfg["key"], Path(cfg["file"]), cfg["sha256"], Kill(Path(cfg["log"])))
"""


def _store(s3: dict[str, Any]) -> dict[str, Any]:
    return {"bucket": s3["bucket"], "prefix": "sevensa/big", "endpoint_url": s3["url"], "region": "us-east-1",
            "access_key_id": s3["access_key_id"], "secret_access_key": s3["secret_access_key"], "part_size": PART}


def test_killed_upload_shows_nothing_and_resumes(s3_server: dict[str, Any], tmp_path: Path) -> None:
    blob = tmp_path / "volume.tar"
    blob.write_bytes(os.urandom(13 * MIB))
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    log_path, key = tmp_path / "upload.json", "b1/volumes/uploads.tar"
    cfg = {"store": _store(s3_server), "key": key, "file": str(blob), "sha256": digest, "log": str(log_path)}
    child = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(cfg), text=True, capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert child.returncode == -9, child.stderr[-2000:]

    store = S3Store(**_store(s3_server))
    upload_id = json.loads(log_path.read_text())["id"]
    assert s3_server["secret_access_key"] not in log_path.read_text()
    # Killed after part 2: no object under the key, in no listing; the parts are held by the upload only.
    assert store.stat(key) is None and store.keys("b1") == []
    assert s3multipart.pending(store, key) == [upload_id]
    assert sorted(s3multipart.list_parts(store, key, upload_id) or {}) == [1, 2]

    log = Log(log_path)
    store.put(key, blob, digest, log)
    assert log.sent == [3]  # parts 1 and 2 were S3's already, with the local file's MD5
    st = store.stat(key)
    assert st is not None and (st.size, st.sha256) == (13 * MIB, digest)
    store.fetch(key, tmp_path / "back")
    assert hashlib.sha256((tmp_path / "back").read_bytes()).hexdigest() == digest
    assert s3multipart.pending(store, key) == [] and store.keys("b1") == [key]


def test_a_permanent_error_aborts_the_upload(s3_server: dict[str, Any], tmp_path: Path) -> None:
    blob = tmp_path / "dump"
    blob.write_bytes(os.urandom(11 * MIB))
    store = S3Store(**_store(s3_server))
    log = Log(tmp_path / "upload.json", fail_after=1)
    with pytest.raises(PermanentError, match="stop here"):
        store.put("b2/dump", blob, hashlib.sha256(blob.read_bytes()).hexdigest(), log)
    assert store.stat("b2/dump") is None and s3multipart.pending(store, "b2/dump") == []
    # The recorded id is gone at S3: the next put starts a new upload and sends every part.
    log = Log(tmp_path / "upload.json")
    store.put("b2/dump", blob, hashlib.sha256(blob.read_bytes()).hexdigest(), log)
    assert log.sent == [1, 2, 3]


def test_part_size_keeps_to_ten_thousand_parts() -> None:
    for size in (1, 64 * MIB * 10_000, 64 * MIB * 10_000 + 1, 5 * 1024**4):
        part = s3multipart.part_size_for(size, 64 * MIB)
        assert part >= 64 * MIB and part % MIB == 0 and -(-size // part) <= 10_000
    assert s3multipart.part_size_for(5 * 1024**4, 64 * MIB) == 525 * MIB


def test_backup_create_killed_mid_upload_resumes_it(s3_server: dict[str, Any], tmp_path: Path) -> None:
    """The step under the real CLI: a 12 MiB volume tar in 5 MiB parts, the process SIGKILLed after part 2
    (failpoint after-part): no object in the bucket, the upload's id in the state; the resume puts the tar
    it had made (not made again) and sends only part 3; the S3 secret (the canary) in no argv, output,
    state or journal."""
    pvc = tmp_path / "pvc"
    pvc.mkdir()
    (pvc / "big.bin").write_bytes(os.urandom(12 * MIB))
    canary = s3_server["secret_access_key"]
    to = {"s3": {"endpoint_url": s3_server["url"], "bucket": s3_server["bucket"], "prefix": "mp",
                 "access_key_id": "${secrets.k}", "secret_access_key": "${secrets.s}", "part_size_mb": 5}}
    rb = write_runbook(tmp_path / "rb", {1: [{"id": "backup", "uses": "backup.create", "with": {
        "to": to, "databases": [], "mysql": [], "redis": [], "volumes": ["uploads"], "openbao": False}}]},
        environment={"target": {"ingress_address": "127.0.0.1", "volume_paths": {"uploads": str(pvc)}}},
        secrets={"k": {"env": "MIG_K"}, "s": {"env": "MIG_S"}})
    state = tmp_path / "state"
    env = {"MIG_K": s3_server["access_key_id"], "MIG_S": canary}
    args = ("run", "--runbook", str(rb), "--state-dir", str(state), "--phase", "1")
    scanner = ArgvScanner([canary])
    scanner.start()
    try:
        crashed = migrate("--log-level", "debug", *args, env={**env, "MIGRATE_FAILPOINTS": "backup:after-part@2=crash"})
        store = s3_server["store"]("mp")
        assert crashed.returncode == -9, crashed.stderr[-2000:]
        assert store.keys() == []  # nothing visible: only the upload's parts
        facts = json.loads(next(state.glob("*.state.json")).read_text())["steps"]["backup"]["facts"]
        ((key, rec),) = facts["uploads"].items()
        assert s3multipart.pending(store, key) == [rec["id"]]
        assert sorted(s3multipart.list_parts(store, key, rec["id"]) or {}) == [1, 2]
        resumed = migrate("--log-level", "debug", *args, env=env)
    finally:
        scanner.stop.set()
        scanner.join(timeout=10)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    journal = [json.loads(x) for x in next(state.glob("*.journal.jsonl")).read_text().splitlines()]
    assert [e["key"] for e in journal if e.get("event") == "backup-artefact-staged"] == ["volumes/uploads.tar"]
    (done,) = [e for e in journal if e.get("event") == "backup-artefact"]
    st = store.stat(key)
    assert st is not None and (st.size, st.sha256) == (done["bytes"], done["sha256"]) and st.size > 12 * MIB
    store.fetch(key, tmp_path / "back.tar")
    assert hashlib.sha256((tmp_path / "back.tar").read_bytes()).hexdigest() == done["sha256"]
    assert s3multipart.pending(store, key) == []
    assert sorted(k.rsplit("/", 1)[-1] for k in store.keys()) == ["backup.json", "uploads.tar"]
    assert scanner.scans > 3 and scanner.hits == []
    assert not any(canary in t for t in (crashed.stdout, crashed.stderr, resumed.stdout, resumed.stderr))
    for path in state.rglob("*"):
        assert not path.is_file() or canary.encode() not in path.read_bytes(), path
