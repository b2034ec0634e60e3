"""The append-only JSONL journal: one line per event, for audit. Secrets are masked before writing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from migrator import redact


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, "pid": os.getpid(), **fields}
        line = redact.redact(json.dumps(record, sort_keys=True, default=str)) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND keeps concurrent writers from interleaving within a line; fsync for durability.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a torn last line after a crash: skip it, keep the rest
        return out
