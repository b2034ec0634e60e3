"""Where a backup's artefacts are kept: a directory, or an S3-compatible bucket (boto3).

Both stores offer the same few operations on keys ("postgres/rentguy-db/rentguy.dump"): put a local
file (with its sha256, kept beside it: a `.sha256` file in a directory, the object's metadata in S3),
stat (size and the recorded sha256, or None when the key is absent), fetch to a local file, delete.
A put lands complete or not at all: a temporary name renamed in a directory, a single PutObject (or a
multipart upload completed only at its end) in S3. TLS is verified by default; the credentials are held
in memory by the client, never logged (botocore's errors are reduced to their code and message).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import boto3
import botocore.config
import botocore.exceptions

from migrator import redact
from migrator.errors import PermanentError, TemporaryError

SUM_SUFFIX = ".sha256"
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class Stat:
    size: int
    sha256: str | None  # what was recorded at put time (None: no record, e.g. written by someone else)


class Store(Protocol):
    label: str

    def put(self, key: str, local: Path, sha256: str) -> None: ...

    def put_bytes(self, key: str, data: bytes, sha256: str) -> None: ...

    def stat(self, key: str) -> Stat | None: ...

    def fetch(self, key: str, local: Path) -> None: ...

    def read_bytes(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None: ...


class DirStore:
    """A local (or mounted) directory: key -> file, key.sha256 -> its recorded digest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def _write(self, key: str, fill: Any, sha256: str) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = dest.with_name(dest.name + PART_SUFFIX)
        fill(tmp)
        os.chmod(tmp, 0o600)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        side = dest.with_name(dest.name + SUM_SUFFIX)
        side_tmp = side.with_name(side.name + PART_SUFFIX)
        side_tmp.write_text(sha256 + "\n")
        os.replace(side_tmp, side)
        os.replace(tmp, dest)

    def put(self, key: str, local: Path, sha256: str) -> None:
        self._write(key, lambda tmp: shutil.copyfile(local, tmp), sha256)

    def put_bytes(self, key: str, data: bytes, sha256: str) -> None:
        self._write(key, lambda tmp: tmp.write_bytes(data), sha256)

    def stat(self, key: str) -> Stat | None:
        path = self._path(key)
        if not path.is_file():
            return None
        side = path.with_name(path.name + SUM_SUFFIX)
        recorded = side.read_text().strip() if side.is_file() else None
        return Stat(path.stat().st_size, recorded or None)

    def fetch(self, key: str, local: Path) -> None:
        path = self._path(key)
        if not path.is_file():
            raise PermanentError(f"backup {self.label}: {key} is missing")
        shutil.copyfile(path, local)

    def read_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def delete(self, key: str) -> None:
        path = self._path(key)
        for p in (path, path.with_name(path.name + SUM_SUFFIX)):
            p.unlink(missing_ok=True)
        # Empty directories this backup made are removed too, never the root's parents.
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def sha256_of(self, key: str) -> str | None:
        """The digest of what is stored now (a directory can be read cheaply; S3 relies on its record)."""
        path = self._path(key)
        if not path.is_file():
            return None
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()


class S3Store:
    """A bucket of an S3-compatible service; keys under `prefix`. The sha256 is the object's metadata."""

    def __init__(self, *, bucket: str, prefix: str, endpoint_url: str | None, region: str,
                 access_key_id: str, secret_access_key: str, verify: bool | str = True) -> None:
        for value in (access_key_id, secret_access_key):
            redact.register(value)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        where = endpoint_url or f"s3.{region}.amazonaws.com"
        self.label = f"s3://{bucket}/{self.prefix}" + (f" at {where}" if endpoint_url else "")
        cfg = botocore.config.Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10,
                                     read_timeout=60, s3={"addressing_style": "path"},
                                     request_checksum_calculation="when_required",
                                     response_checksum_validation="when_required")
        session = boto3.session.Session()
        self.client = session.client("s3", endpoint_url=endpoint_url, region_name=region,
                                     aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
                                     verify=verify, config=cfg)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, what: str, exc: BaseException) -> Exception:
        if isinstance(exc, botocore.exceptions.ClientError):
            err = exc.response.get("Error", {})
            code, msg = str(err.get("Code", "?")), str(err.get("Message", ""))
            text = redact.redact(f"{self.label}: {what}: {code} {msg}".strip())
            if code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "404"):
                return PermanentError(text)
            return TemporaryError(text)
        if isinstance(exc, botocore.exceptions.SSLError):
            return PermanentError(f"{self.label}: {what}: TLS verification failed (give ca_file, or fix the "
                                  "endpoint's certificate)")
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return TemporaryError(redact.redact(f"{self.label}: {what}: {exc.__class__.__name__}: {exc}"))
        return exc if isinstance(exc, Exception) else RuntimeError(str(exc))

    def put(self, key: str, local: Path, sha256: str) -> None:
        try:
            self.client.upload_file(str(local), self.bucket, self._key(key),
                                    ExtraArgs={"Metadata": {"sha256": sha256}})
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                boto3.exceptions.S3UploadFailedError) as exc:
            if isinstance(exc, boto3.exceptions.S3UploadFailedError):
                raise TemporaryError(redact.redact(f"{self.label}: upload {key}: {exc}")) from None
            raise self._fail(f"upload {key}", exc) from None

    def put_bytes(self, key: str, data: bytes, sha256: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, Metadata={"sha256": sha256})
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(f"upload {key}", exc) from None

    def stat(self, key: str) -> Stat | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(f"stat {key}", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._fail(f"stat {key}", exc) from None
        return Stat(int(head["ContentLength"]), (head.get("Metadata") or {}).get("sha256"))

    def fetch(self, key: str, local: Path) -> None:
        try:
            self.client.download_file(self.bucket, self._key(key), str(local))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(f"download {key}", exc) from None

    def read_bytes(self, key: str) -> bytes | None:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return bytes(obj["Body"].read())
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(f"read {key}", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._fail(f"read {key}", exc) from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(f"delete {key}", exc) from None

    def sha256_of(self, key: str) -> str | None:
        st = self.stat(key)
        return st.sha256 if st else None

    def close(self) -> None:
        self.client.close()
