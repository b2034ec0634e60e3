"""validate.app-data: the application on the target reads the data that was moved, as on the source.

Both sides are asked through the application's own HTTP API (n8n's /api/v1/workflows, Grafana's
/api/search): the listed items (by the given fields) must be the same. A source that lists nothing
proves nothing, so the gate refuses it (`min_items`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from migrator.adapters.httpjson import get_json
from migrator.errors import GateNotReady
from migrator.steps.base import ReadOnlyStep, StrictModel, step_type


class Side(StrictModel):
    url: str  # base URL, e.g. http://127.0.0.10:18080 (an address) or https://n8n.sevensa.nl
    host_header: str | None = None  # the public name, when url is an address standing in for it
    tls_verify: bool = True


class AppDataParams(StrictModel):
    source: Side
    target: Side
    path: str  # e.g. /api/v1/workflows
    items: str | None = None  # the key holding the list (n8n: data); none: the answer is the list
    fields: list[str] = Field(min_length=1)  # what identifies an item and must match (id, name, version...)
    min_items: int = Field(default=1, ge=0)


def listing(side: Side, p: AppDataParams) -> list[tuple[str, ...]]:
    doc = get_json(side.url.rstrip("/") + p.path, side.host_header, tls_verify=side.tls_verify)
    items = doc.get(p.items) if p.items and isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise GateNotReady(f"{side.host_header or side.url}{p.path}: no list"
                           + (f" under {p.items!r}" if p.items else ""))
    return sorted(tuple(str(i.get(f)) for f in p.fields) for i in items if isinstance(i, dict))


@step_type("validate.app-data")
class ValidateAppData(ReadOnlyStep[AppDataParams]):
    """The same items listed by the application's API on the source and on the target."""

    _count: int | None = None

    def verify(self) -> None:
        p = self.params
        src, dst = listing(p.source, p), listing(p.target, p)
        if len(src) < p.min_items:
            raise GateNotReady(f"the source lists {len(src)} item(s) at {p.path}, fewer than {p.min_items}: "
                               "nothing to compare")
        missing, extra = sorted(set(src) - set(dst)), sorted(set(dst) - set(src))
        if missing or extra:
            raise GateNotReady(f"{p.path}: {len(src)} on the source, {len(dst)} on the target"
                               + (f"; missing on the target: {', '.join('/'.join(m) for m in missing[:5])}" if missing else "")
                               + (f"; on the target only: {', '.join('/'.join(e) for e in extra[:5])}" if extra else ""))
        self._count = len(src)
        self.ctx.journal("app data listed alike", path=p.path, items=len(src))

    def report(self) -> dict[str, Any]:
        return {"items": self._count}
