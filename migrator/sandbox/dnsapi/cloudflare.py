"""Cloudflare API v4, the DNS records part, on top of a real BIND zone.

- Authentication: `Authorization: Bearer <API token>`; anything else 403 {success: false, errors:
  [{code: 10000, message: "Authentication error"}]}.
- GET /client/v4/zones (page, per_page), GET /zones/{id}: the one zone.
- GET /zones/{id}/dns_records: filters type, name (the full name), content; paginated by page/per_page
  with result_info {page, per_page, count, total_count, total_pages}.
- POST /zones/{id}/dns_records {type, name, content, ttl}; PUT /zones/{id}/dns_records/{record id};
  DELETE /zones/{id}/dns_records/{record id}. TTL 1 ("automatic", 300 s) or 60-86400 (error 9021);
  an identical record 81058; A/AAAA/CNAME sharing a name with a CNAME 81053.
- Names in answers carry no root dot, and neither do CNAME targets; record ids are stable (32 hex).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from typing import Any

from .server import Request, Response
from .zone import BindZone, Entry, UpdateRefused

AUTOMATIC_TTL = 300


def _error(status: int, code: int, message: str) -> Response:
    return status, {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None}


def _ok(result: Any, info: dict[str, int] | None = None) -> Response:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if info is not None:
        body["result_info"] = info
    return 200, body


class CloudflareApi:
    def __init__(self, zone: BindZone, token: str) -> None:
        self.zone = zone
        self.name = zone.zone.rstrip(".")
        self.token = token
        self.zone_id = hashlib.md5(self.name.encode(), usedforsecurity=False).hexdigest()
        self.ids: dict[tuple[str, str, str], str] = {}  # (name, type, content) -> record id

    def __call__(self, req: Request) -> Response:
        if req.headers.get("authorization", "") != f"Bearer {self.token}":
            return _error(403, 10000, "Authentication error")
        if not req.path.startswith("/client/v4/"):
            return _error(404, 7000, "No route for that URI")
        parts = req.path[len("/client/v4/"):].strip("/").split("/")
        if parts == ["zones"] and req.method == "GET":
            return self._paged([self._zone()], req.query)
        if len(parts) < 2 or parts[0] != "zones" or parts[1] != self.zone_id:
            return _error(404, 7003, "Could not route to /zones, perhaps your object identifier is invalid?")
        if len(parts) == 2 and req.method == "GET":
            return _ok(self._zone())
        if len(parts) >= 3 and parts[2] == "dns_records":
            with self.zone.lock:
                if len(parts) == 3 and req.method == "GET":
                    return self._list(req.query)
                if len(parts) == 3 and req.method == "POST":
                    return self._create(req.json() or {})
                if len(parts) == 4 and req.method in ("PUT", "DELETE"):
                    return self._one(req.method, parts[3], req.json() or {})
        return _error(405, 10405, f"Method {req.method} not allowed for this route")

    def _zone(self) -> dict[str, Any]:
        return {"id": self.zone_id, "name": self.name, "status": "active", "paused": False, "type": "full",
                "name_servers": []}

    def _paged(self, items: list[Any], query: dict[str, str]) -> Response:
        try:
            page, per_page = max(1, int(query.get("page", 1))), min(5000, max(5, int(query.get("per_page", 100))))
        except ValueError:
            return _error(400, 1004, "page and per_page must be numbers")
        total_pages = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        return _ok(chunk, {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(items),
                           "total_pages": total_pages})

    # -- records -------------------------------------------------------------------------------------------
    def _id(self, e: Entry) -> str:
        key = (e.name, e.rtype, e.content)
        if key not in self.ids:
            self.ids[key] = secrets.token_hex(16)
        return self.ids[key]

    def _out(self, e: Entry) -> dict[str, Any]:
        content = e.content.rstrip(".") if e.rtype in ("CNAME", "NS", "MX") else e.content
        return {"id": self._id(e), "zone_id": self.zone_id, "zone_name": self.name, "name": e.name.rstrip("."),
                "type": e.rtype, "content": content, "proxiable": e.rtype in ("A", "AAAA", "CNAME"),
                "proxied": False, "ttl": e.ttl, "locked": False, "comment": None, "tags": []}

    def _list(self, query: dict[str, str]) -> Response:
        records = [self._out(e) for e in self.zone.entries()]
        for field in ("type", "name", "content"):
            if field in query:
                want = query[field].rstrip(".").lower() if field != "type" else query[field].upper()
                records = [r for r in records if str(r[field]).lower() == want or str(r[field]) == want]
        return self._paged(records, query)

    def _entry(self, body: dict[str, Any]) -> Entry | Response:
        rtype, name, content = str(body.get("type") or "").upper(), str(body.get("name") or ""), body.get("content")
        if not rtype or not name or not isinstance(content, str) or not content:
            return _error(400, 9000, "DNS record needs type, name and content")
        ttl = body.get("ttl", 1)
        if not isinstance(ttl, int) or not (ttl == 1 or 60 <= ttl <= 86400):
            return _error(400, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.")
        full = name.rstrip(".").lower()
        if full != self.name and not full.endswith("." + self.name):
            full = f"{full}.{self.name}"
        if rtype in ("CNAME", "NS", "MX") and not content.endswith("."):
            content += "."
        return Entry(full + ".", rtype, AUTOMATIC_TTL if ttl == 1 else ttl, content)

    def _conflict(self, e: Entry, ignore: Entry | None = None) -> Response | None:
        here = [x for x in self.zone.entries() if x.name == e.name and x != ignore]
        if any(x.rtype == e.rtype and x.content == e.content for x in here):
            return _error(400, 81058, "An identical record already exists.")
        if e.rtype in ("A", "AAAA", "CNAME") and any(
                x.rtype == "CNAME" or (e.rtype == "CNAME" and x.rtype in ("A", "AAAA")) for x in here):
            return _error(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
        return None

    def _create(self, body: dict[str, Any]) -> Response:
        e = self._entry(body)
        if not isinstance(e, Entry):
            return e
        refused = self._conflict(e)
        if refused:
            return refused
        try:
            self.zone.add(e.name, e.rtype, e.ttl, e.content)
        except UpdateRefused as exc:
            return _error(400, 1004, f"DNS Validation Error: {exc}")
        return _ok(self._out(e))

    def _one(self, method: str, rid: str, body: dict[str, Any]) -> Response:
        found = [e for e in self.zone.entries() if self.ids.get((e.name, e.rtype, e.content)) == rid]
        if not found:
            return _error(404, 81044, "Record does not exist.")
        old = found[0]
        try:
            if method == "DELETE":
                self.zone.delete(old.name, old.rtype, old.content)
                del self.ids[(old.name, old.rtype, old.content)]
                return _ok({"id": rid})
            new = self._entry({"type": old.rtype, "name": old.name, "content": old.content, **body})
            if not isinstance(new, Entry):
                return new
            refused = self._conflict(new, ignore=old)
            if refused:
                return refused
            self.zone.replace_one(old, new)
        except UpdateRefused as exc:
            return _error(400, 1004, f"DNS Validation Error: {exc}")
        del self.ids[(old.name, old.rtype, old.content)]
        self.ids[(new.name, new.rtype, new.content)] = rid  # an updated record keeps its id
        return _ok(self._out(new))
