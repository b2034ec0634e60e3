"""Turning store events into the watch events one request is entitled to see."""

from __future__ import annotations

from typing import Any

from .resources import Resource
from .selectors import Matcher
from .store import Event, Store


class WatchFilter:
    def __init__(self, res: Resource, ns: str | None, labels: Matcher, flds: Matcher) -> None:
        self.res, self.ns, self.labels, self.flds = res, ns, labels, flds

    def visible(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.ns is not None and (obj.get("metadata") or {}).get("namespace") != self.ns:
            return False
        return self.labels(obj) and self.flds(obj)

    def translate(self, event: Event) -> dict[str, Any] | None:
        """An object moving out of the selector is DELETED for this watcher, moving in is ADDED."""
        if event.key != self.res.key:
            return None
        now = self.visible(event.obj)
        if event.type != "MODIFIED":
            return {"type": event.type, "object": event.obj} if now else None
        before = self.visible(event.old)
        if now and before:
            return {"type": "MODIFIED", "object": event.obj}
        if now:
            return {"type": "ADDED", "object": event.obj}
        if before:
            return {"type": "DELETED", "object": event.obj}
        return None

    def initial(self, store: Store) -> list[dict[str, Any]]:
        items = store.select(self.res.key, self.ns if self.res.namespaced else None)
        return [{"type": "ADDED", "object": o} for o in items if self.visible(o)]

    def bookmark(self, rv: int, initial_end: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"type": "BOOKMARK", "object": {"kind": self.res.kind, "apiVersion": self.res.api_version,
                                               "metadata": meta}}
