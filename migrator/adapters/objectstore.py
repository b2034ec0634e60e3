"""Where a backup's artefacts are kept: a directory, or an S3-compatible bucket (SigV4 over requests).

Both stores offer the same few operations on keys ("postgres/rentguy-db/rentguy.dump"): put a local
file (with its sha256, kept beside it: a `.sha256` file in a directory, the object's metadata in S3),
stat (size and the recorded sha256, or None when the key is absent), fetch to a local file, delete.
A put lands complete or not at all: a temporary name renamed in a directory; in S3 a single PutObject, or
for a file larger than one part a multipart upload, whose parts are invisible until CompleteMultipartUpload
(see S3Store.put: a killed upload leaves no object, and can be continued). TLS is verified by default; the
credentials are held in memory only, never logged (errors carry the service's code and message, redacted).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import html
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests

from migrator import redact
from migrator.adapters import s3multipart
from migrator.errors import PermanentError, TemporaryError

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SUM_SUFFIX = ".sha256"
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class Stat:
    size: int
    sha256: str | None  # what was recorded at put time (None: no record, e.g. written by someone else)


class Upload(Protocol):
    """Where a multipart upload's id is kept between runs (the step's facts): an id is no secret, and with it
    a killed upload is continued rather than started again."""

    def get(self, key: str, sha256: str) -> str | None: ...

    def started(self, key: str, sha256: str, upload_id: str) -> None: ...

    def part_done(self, number: int) -> None: ...


class Store(Protocol):
    label: str

    def put(self, key: str, local: Path, sha256: str, upload: Upload | None = None) -> None: ...

    def put_bytes(self, key: str, data: bytes, sha256: str) -> None: ...

    def stat(self, key: str) -> Stat | None: ...

    def fetch(self, key: str, local: Path) -> None: ...

    def read_bytes(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None: ...

    def sha256_of(self, key: str) -> str | None: ...

    def abort_uploads(self, key: str) -> int: ...


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

    def put(self, key: str, local: Path, sha256: str, upload: Upload | None = None) -> None:
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

    def abort_uploads(self, key: str) -> int:
        """Remove the temporary files of a put that did not finish (a crash between write and rename)."""
        path = self._path(key)
        parts = [p for p in (path.with_name(path.name + PART_SUFFIX),
                             path.with_name(path.name + SUM_SUFFIX + PART_SUFFIX)) if p.is_file()]
        for p in parts:
            p.unlink()
        return len(parts)

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


def canonical_query(query: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))


class S3Store:
    """A bucket of an S3-compatible service, keys under `prefix`, spoken to over HTTPS with AWS Signature
    Version 4 (requests; no SDK: boto3's botocore pins python-dateutil<3, the kubernetes client 37 needs
    >=3, and one venv cannot hold both). The sha256 is the object's metadata (x-amz-meta-sha256), and the
    upload's signed x-amz-content-sha256 makes AWS refuse a body that does not match it (moto does not check it).
    A file up to `part_size` is one PUT; a larger one a multipart upload (parts of `part_size`, made larger
    when needed so that there are at most 10000 of them, S3's limit; up to 5 TiB, S3's largest object)."""

    MAX_PUT = 5 * 1024**3
    MIN_PART = 5 * 1024**2  # S3's smallest part (all but the last)
    MAX_PARTS = 10_000
    MAX_OBJECT = 5 * 1024**4
    DEFAULT_PART = 64 * 1024**2

    def __init__(self, *, bucket: str, prefix: str, endpoint_url: str | None, region: str,
                 access_key_id: str, secret_access_key: str, verify: bool | str = True,
                 part_size: int = DEFAULT_PART) -> None:
        if not self.MIN_PART <= part_size <= self.MAX_PUT:
            raise PermanentError(f"S3 part size {part_size}: expected 5 MiB to 5 GiB")
        self.part_size = part_size
        for value in (access_key_id, secret_access_key):
            redact.register(value)
        self.bucket, self.region = bucket, region
        self.prefix = prefix.strip("/")
        self._key_id, self._secret = access_key_id, secret_access_key
        if endpoint_url:  # an S3-compatible service: path-style addressing
            self.base, self.path_prefix = endpoint_url.rstrip("/"), f"/{quote(bucket, safe='')}"
        else:  # AWS: virtual-hosted style
            self.base, self.path_prefix = f"https://{bucket}.s3.{region}.amazonaws.com", ""
        self.label = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint_url}" if endpoint_url else "")
        self.http = requests.Session()
        self.http.verify = verify
        self.http.trust_env = False  # no proxy or netrc from the environment

    # -- signing ---------------------------------------------------------------------------------------
    def _sign(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], payload: str) -> None:
        now = datetime.datetime.now(datetime.UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers.update({"host": urlsplit(self.base).netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload})
        lower = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
        names = sorted(lower)
        canonical = "\n".join([method, path, canonical_query(query),
                                "".join(f"{n}:{lower[n]}\n" for n in names), ";".join(names), payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + self._secret).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self._key_id}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")

    def full_key(self, key: str) -> str:
        """The object's key in the bucket (under the prefix)."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def _path(self, key: str | None) -> str:
        if key is None:
            return self.path_prefix or "/"
        full = self.full_key(key)
        return f"{self.path_prefix}/{quote(full, safe='/-_.~')}"

    def call(self, what: str, method: str, key: str | None, *, query: dict[str, str] | None = None,
              headers: dict[str, str] | None = None, body: Any = None, payload: str = EMPTY_SHA256,
              stream: bool = False, ok: tuple[int, ...] = (200,)) -> requests.Response:
        path, query, headers = self._path(key), dict(query or {}), dict(headers or {})
        self._sign(method, path, query, headers, payload)
        try:
            qs = canonical_query(query)  # sent exactly as signed (requests would encode a space as +)
            resp = self.http.request(method, self.base + path + (f"?{qs}" if qs else ""), headers=headers, data=body,
                                     stream=stream, timeout=(10, 300))
        except requests.exceptions.SSLError:
            raise PermanentError(f"{self.label}: {what}: TLS verification failed (give ca_file, or fix the "
                                 "endpoint's certificate)") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TemporaryError(f"{self.label}: {what}: {exc.__class__.__name__}") from None
        if resp.status_code in ok or resp.status_code == 404 and 404 in ok:
            return resp
        code = re.search(r"<Code>([^<]*)</Code>", resp.text or "")
        msg = re.search(r"<Message>([^<]*)</Message>", resp.text or "")
        text = redact.redact(f"{self.label}: {what}: HTTP {resp.status_code} {code.group(1) if code else ''} "
                             f"{msg.group(1) if msg else ''}".strip())
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise TemporaryError(text)
        raise PermanentError(text)

    # -- the store -------------------------------------------------------------------------------------
    def put(self, key: str, local: Path, sha256: str, upload: Upload | None = None) -> None:
        size = local.stat().st_size
        if size > self.part_size:
            from migrator.adapters import s3multipart

            s3multipart.put(self, key, local, sha256, upload)
            return
        with local.open("rb") as fh:
            self.call(f"upload {key}", "PUT", key, body=fh, payload=sha256,
                       headers={"content-length": str(size), "x-amz-meta-sha256": sha256,
                                "content-type": "application/octet-stream"})

    def put_bytes(self, key: str, data: bytes, sha256: str) -> None:
        self.call(f"upload {key}", "PUT", key, body=data, payload=sha256,
                   headers={"content-length": str(len(data)), "x-amz-meta-sha256": sha256,
                            "content-type": "application/json"})

    def stat(self, key: str) -> Stat | None:
        resp = self.call(f"stat {key}", "HEAD", key, ok=(200, 404))
        if resp.status_code == 404:
            return None
        return Stat(int(resp.headers.get("content-length", "0")), resp.headers.get("x-amz-meta-sha256"))

    def fetch(self, key: str, local: Path) -> None:
        resp = self.call(f"download {key}", "GET", key, stream=True, ok=(200, 404))
        if resp.status_code == 404:
            raise PermanentError(f"backup {self.label}: {key} is missing")
        with resp, local.open("wb") as fh:
            for chunk in resp.iter_content(1 << 20):
                fh.write(chunk)

    def read_bytes(self, key: str) -> bytes | None:
        resp = self.call(f"read {key}", "GET", key, ok=(200, 404))
        return None if resp.status_code == 404 else resp.content

    def delete(self, key: str) -> None:
        self.call(f"delete {key}", "DELETE", key, ok=(200, 204, 404))

    def keys(self, under: str = "") -> list[str]:
        """Every key under `under` (relative to the prefix), for listings and tests."""
        full = "/".join(x for x in (self.prefix, under) if x)
        out: list[str] = []
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": full}
            if token:
                query["continuation-token"] = token
            text = self.call("list", "GET", None, query=query).text
            out += [k[len(self.prefix) + 1:] if self.prefix else k for k in re.findall(r"<Key>([^<]*)</Key>", text)]
            more = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", text)
            if not more or "<IsTruncated>true</IsTruncated>" not in text:
                return [html.unescape(k) for k in out]
            token = html.unescape(more.group(1))

    def abort_uploads(self, key: str) -> int:
        """Abort every unfinished multipart upload of `key` (their parts are kept, and billed, otherwise)."""
        return s3multipart.abort_pending(self, key)

    def sha256_of(self, key: str) -> str | None:
        st = self.stat(key)
        return st.sha256 if st else None

    def close(self) -> None:
        self.http.close()
