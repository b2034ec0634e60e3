"""S3 multipart upload of one large local file (CreateMultipartUpload, UploadPart, CompleteMultipartUpload).

Why it is safe to kill: S3 shows no object under the key until CompleteMultipartUpload, so a run killed
mid-upload leaves only parts, which no listing or GET returns. Why it resumes: the upload's id is handed
to `upload.started` (the step keeps it in its facts, with the file's sha256); the next put of the same
file (same sha256) asks S3 which parts it holds (ListParts) and sends only those whose size and MD5 (the
part's ETag) differ from the local file's; an unknown or vanished id starts a new upload, and uploads of
the key that nobody recorded (killed between create and record) are aborted first. A permanent error
aborts the upload (AbortMultipartUpload: its parts are freed); a temporary one leaves it for the retry.
The completed object is checked by HEAD (its size and recorded sha256) and, where the service's part
ETags are the parts' MD5s (not so with SSE-KMS or SSE-C: then no part is taken for S3's on resume either),
its ETag (the MD5 of the parts' MD5s, "-N"). Each part is hashed, then streamed from the file (never
held in memory whole), its sha256 signed and its Content-MD5 sent (AWS refuses a body matching neither).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from migrator.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    from migrator.adapters.objectstore import S3Store, Upload

_CHUNK = 1 << 20


def part_size_for(size: int, configured: int, max_parts: int = 10_000) -> int:
    """`configured`, or (for a file that would need more than `max_parts` parts) the smallest whole MiB that
    keeps it to `max_parts`."""
    need = math.ceil(size / max_parts)
    return max(configured, math.ceil(need / (1 << 20)) * (1 << 20))


class _Slice:
    """`length` bytes of an open file from `offset`, read in chunks (requests streams a body with read())."""

    def __init__(self, fh: BinaryIO, offset: int, length: int) -> None:
        fh.seek(offset)
        self.fh, self.left, self.length = fh, length, length

    def __len__(self) -> int:
        return self.length

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.fh.read(n) if n else b""
        self.left -= len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK):
            yield chunk


def _hash_range(fh: BinaryIO, offset: int, length: int) -> tuple[str, str]:
    """(md5 hex, sha256 hex) of the range."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    for chunk in _Slice(fh, offset, length):
        md5.update(chunk)
        sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def _tag(name: str, text: str) -> list[str]:
    return [html.unescape(v) for v in re.findall(rf"<{name}>([^<]*)</{name}>", text)]


def _etag(value: str) -> str:
    return value.strip().strip('"').lower()


def list_parts(s3: S3Store, key: str, upload_id: str) -> dict[int, tuple[int, str]] | None:
    """{part number: (size, md5)} of the upload, or None when S3 does not know it (completed or aborted)."""
    out: dict[int, tuple[int, str]] = {}
    marker = "0"
    while True:
        resp = s3.call(f"list parts of {key}", "GET", key, ok=(200, 404),
                        query={"uploadId": upload_id, "part-number-marker": marker})
        if resp.status_code == 404:
            return None
        for block in re.findall(r"<Part>(.*?)</Part>", resp.text, re.S):
            number, size, etag = _tag("PartNumber", block), _tag("Size", block), _tag("ETag", block)
            if number and size and etag:
                out[int(number[0])] = (int(size[0]), _etag(etag[0]))
        nxt = _tag("NextPartNumberMarker", resp.text)
        if "<IsTruncated>true</IsTruncated>" not in resp.text or not nxt:
            return out
        marker = nxt[0]


def pending(s3: S3Store, key: str) -> list[str]:
    """The ids of the unfinished multipart uploads of exactly `key`."""
    full = s3.full_key(key)
    text = s3.call(f"list uploads of {key}", "GET", None, query={"uploads": "", "prefix": full}).text
    out = []
    for block in re.findall(r"<Upload>(.*?)</Upload>", text, re.S):
        if _tag("Key", block) == [full]:
            out += _tag("UploadId", block)
    return out


def abort(s3: S3Store, key: str, upload_id: str) -> None:
    s3.call(f"abort upload of {key}", "DELETE", key, query={"uploadId": upload_id}, ok=(200, 204, 404))


def abort_pending(s3: S3Store, key: str) -> int:
    """Abort every unfinished upload of `key`; returns how many."""
    ids = pending(s3, key)
    for upload_id in ids:
        abort(s3, key, upload_id)
    return len(ids)


def _create(s3: S3Store, key: str, sha256: str) -> str:
    resp = s3.call(f"start upload of {key}", "POST", key, query={"uploads": ""},
                    headers={"x-amz-meta-sha256": sha256, "content-type": "application/octet-stream"})
    ids = _tag("UploadId", resp.text)
    if not ids:
        raise PermanentError(f"{s3.label}: start upload of {key}: no UploadId in the answer")
    return ids[0]


def _complete(s3: S3Store, key: str, upload_id: str, etags: list[str], md5s: list[str]) -> None:
    """Complete with the ETags the service gave each part; check the object's ETag where they are MD5s."""
    body = ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>\"{e}\"</ETag></Part>" for n, e in enumerate(etags, 1))
        + "</CompleteMultipartUpload>").encode()
    resp = s3.call(f"complete upload of {key}", "POST", key, query={"uploadId": upload_id}, body=body,
                    payload=hashlib.sha256(body).hexdigest(),
                    headers={"content-length": str(len(body)), "content-type": "application/xml"})
    # S3 may answer 200 and put the error in the body (it failed after the headers went out).
    if "<Error>" in resp.text:
        code = _tag("Code", resp.text)
        raise PermanentError(f"{s3.label}: complete upload of {key}: {code[0] if code else 'error'}")
    want = hashlib.md5(b"".join(bytes.fromhex(m) for m in md5s), usedforsecurity=False).hexdigest()
    got = _tag("ETag", resp.text)
    if got and etags == md5s and _etag(got[0]) != f"{want}-{len(md5s)}":
        raise PermanentError(f"{s3.label}: {key}: the completed object's ETag {got[0]} is not that of the parts sent")


def put(s3: S3Store, key: str, local: Path, sha256: str, upload: Upload | None) -> None:
    """Upload `local` (whose sha256 is `sha256`) to `key` in parts, continuing the recorded upload if any."""
    size = local.stat().st_size
    if size > s3.MAX_OBJECT:
        raise PermanentError(f"{s3.label}: {key} is {size} bytes: more than S3's largest object (5 TiB)")
    part = part_size_for(size, s3.part_size, s3.MAX_PARTS)
    count = math.ceil(size / part)
    upload_id = upload.get(key, sha256) if upload else None
    have = list_parts(s3, key, upload_id) if upload_id else None
    if have is None:
        abort_pending(s3, key)  # an upload nobody recorded (killed before its id was kept) is not continued
        upload_id = _create(s3, key, sha256)
        have = {}
        if upload:
            upload.started(key, sha256, upload_id)
    assert upload_id is not None
    md5s: list[str] = []
    etags: list[str] = []
    try:
        with local.open("rb") as fh:
            for n in range(1, count + 1):
                offset = (n - 1) * part
                length = min(part, size - offset)
                md5, sha = _hash_range(fh, offset, length)
                md5s.append(md5)
                if have.get(n) == (length, md5):
                    etags.append(md5)
                    continue  # S3 holds this part already (a resumed upload)
                resp = s3.call(f"upload part {n}/{count} of {key}", "PUT", key,
                                query={"partNumber": str(n), "uploadId": upload_id}, body=_Slice(fh, offset, length),
                                payload=sha, headers={"content-length": str(length),
                                                      "content-md5": base64.b64encode(bytes.fromhex(md5)).decode()})
                etag = _etag(resp.headers.get("etag", ""))
                if not etag:
                    raise PermanentError(f"{s3.label}: part {n} of {key}: no ETag in the answer")
                etags.append(etag)
                if upload:
                    upload.part_done(n)
        _complete(s3, key, upload_id, etags, md5s)
    except PermanentError:
        with contextlib.suppress(PermanentError, TemporaryError):  # the first error is the one to report
            abort(s3, key, upload_id)  # its parts would otherwise be kept (and billed) with no object to show
        raise
    st = s3.stat(key)
    if st is None or st.size != size or st.sha256 != sha256:
        raise PermanentError(f"{s3.label}: {key} after its upload: {st} instead of {size} bytes / {sha256}")
