"""The append-only JSONL journal: one line per event, for audit.

Secrets are masked in the record BEFORE it is serialised: a secret holding `"`, `\\`, a newline or a
non-ASCII letter is escaped by json.dumps, and masking the escaped text would miss it. Each line is
written by one os.write on an O_APPEND descriptor (concurrent writers never interleave within a line)
and a short write is an error naming the file. A torn last line (a crash in the middle of a write, a
full disk) is skipped on read, and the next append starts on a new line so it cannot be swallowed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from migrator import redact
from migrator.errors import PermanentError


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, event: str, **fields: Any) -> None:
        record = redact.redact_obj({"ts": round(time.time(), 3), "event": event, "pid": os.getpid(), **fields})
        # The last pass catches a value that only appears once rendered (default=str of an object).
        data = (redact.redact(json.dumps(record, sort_keys=True, default=str)) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise PermanentError(f"{self.path}: cannot write the journal: {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a torn line before us: end it, so this record stands on its own
            written = os.write(fd, data)
            if written != len(data):
                raise PermanentError(f"{self.path}: short write to the journal ({written} of {len(data)} bytes); "
                                     "the torn line is ignored on read; is the disk full?")
            os.fsync(fd)
        except OSError as exc:
            raise PermanentError(f"{self.path}: cannot write the journal: {exc.strerror}") from None
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                item = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue  # a torn line after a crash: skip it, keep the rest
            if isinstance(item, dict):
                out.append(item)
        return out

