"""Thread-safe object store: one global resourceVersion counter, a bounded event log for watches,
and optional persistence to a JSON state file (atomic rename on every write)."""

from __future__ import annotations

import copy
import json
import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HISTORY = 20000


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED / MODIFIED / DELETED
    key: str  # Resource.key
    obj: dict[str, Any]
    old: dict[str, Any] | None


def _ident(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta["name"])


class Store:
    def __init__(self, state_file: Path | None = None) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.rv = 0
        self.events: deque[Event] = deque(maxlen=HISTORY)
        self.state_file = state_file
        self._batch = 0
        self._dirty = False
        if state_file is not None and state_file.exists():
            self._load(state_file)
        # watches may resume from any version at or after this one
        self.oldest_rv = self.rv

    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text())
        self.rv = int(data.get("resourceVersion", 0))
        for key, objs in (data.get("objects") or {}).items():
            self.objects[key] = {_ident(o): o for o in objs}

    def _persist(self) -> None:
        if self.state_file is None:
            return
        if self._batch:
            self._dirty = True
            return
        data = {"resourceVersion": self.rv,
                "objects": {k: list(v.values()) for k, v in self.objects.items() if v}}
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, self.state_file)
        self._dirty = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several writes into one state-file write."""
        with self.lock:
            self._batch += 1
            try:
                yield
            finally:
                self._batch -= 1
                if not self._batch and self._dirty:
                    self._persist()

    def get(self, key: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get(key, {}).get((ns, name))
            return copy.deepcopy(obj) if obj is not None else None

    def select(self, key: str, ns: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            objs = self.objects.get(key, {})
            items = [o for (n, _), o in sorted(objs.items()) if ns is None or n == ns]
            return copy.deepcopy(items)

    def current_rv(self) -> int:
        with self.lock:
            return self.rv

    def put(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace; assigns the next resourceVersion and records the event."""
        with self.lock:
            self.rv += 1
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(self.rv)
            ident = _ident(stored)
            bucket = self.objects.setdefault(key, {})
            old = bucket.get(ident)
            bucket[ident] = stored
            self.events.append(Event(self.rv, "MODIFIED" if old else "ADDED", key, stored, old))
            self._persist()
            self.changed.notify_all()
            return copy.deepcopy(stored)

    def remove(self, key: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            old = self.objects.get(key, {}).pop((ns, name), None)
            if old is None:
                return None
            self.rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self.events.append(Event(self.rv, "DELETED", key, gone, None))
            self._persist()
            self.changed.notify_all()
            return copy.deepcopy(gone)

    def events_after(self, rv: int) -> list[Event]:
        with self.lock:
            if not self.events or self.events[-1].rv <= rv:
                return []
            return [e for e in self.events if e.rv > rv]

    def oldest_resumable(self) -> int:
        with self.lock:
            if len(self.events) == self.events.maxlen:
                return self.events[0].rv - 1
            return self.oldest_rv

    def all_objects(self) -> Iterator[tuple[str, dict[str, Any]]]:
        with self.lock:
            snapshot = [(k, copy.deepcopy(o)) for k, bucket in self.objects.items() for o in bucket.values()]
        yield from snapshot
