"""DNS at a registrar's HTTP API (TransIP v6, Cloudflare v4) through dns-lexicon's providers.

Why lexicon (3.25) rather than octoDNS: lexicon works record by record (list/create/update/delete of one
name and type), which is what the dns steps do; octoDNS syncs a whole zone to a desired state, which would
make the migrator the owner of every record in the zone.

What an HTTP API does not give, and how this adapter makes up for it:
- No prerequisites. `apply` reads every record set it is about to change and refuses (ConflictError,
  nothing written) unless each still holds what the step saw; a change landing in the milliseconds
  between that read and the write is not seen (RFC 2136 closes that gap, an HTTP API cannot).
- No atomic change set. Writes go one record at a time; when one fails, the writes already made are undone
  (in reverse) before the error is raised. A process killed in the middle leaves a mix of the old and the
  new records, which the dns steps' own checks then report rather than overwrite.
- TransIP keeps one TTL per entry and lexicon changes an entry by deleting and re-creating it: a TTL change
  (lower-ttl, restore-ttl) leaves the name without that record type for one API round trip. Cloudflare
  changes a TTL in place (PUT). Content changes (the cutover) create the new records before deleting the
  old ones, so the name always answers (a CNAME replacing addresses, or the reverse, cannot: deleted first).

Lexicon 3.25's providers call `requests.request` without a timeout, a CA bundle or a configurable base URL.
`_Transport` stands in for the `requests` module inside the provider's module for the length of each call:
every request gets the runbook's timeout, is verified against `ca_file` (or the system CAs), and has the
provider's public endpoint replaced by `api_url` when the runbook sets one. Credentials go into lexicon's
in-memory configuration only: never argv, environment, state or logs.
"""

from __future__ import annotations

import base64
import importlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import requests
from lexicon.config import ConfigResolver

from migrator.adapters.dns import (
    Change,
    ConflictError,
    DNSProvider,
    RRSet,
    Server,
    _canonical,
    authoritative_from_config,
    same,
    show,
)
from migrator.errors import PermanentError, TemporaryError
from migrator.runbook.environment import DNSConfig

# The provider's public API, as lexicon 3.25 has it hard-coded; replaced by environment.dns.api_url.
PUBLIC_API = {"transip": "https://api.transip.nl/v6", "cloudflare": "https://api.cloudflare.com/client/v4"}
_PATCH_LOCK = threading.Lock()  # one provider module patched at a time


class _Transport:
    """What lexicon's provider module sees as `requests`: the real one, with timeout, CA and base URL set."""

    exceptions = requests.exceptions

    def __init__(self, public: str, api_url: str | None, verify: str | bool, timeout: float) -> None:
        self.public, self.api_url = public.rstrip("/"), (api_url or public).rstrip("/")
        self.verify, self.timeout = verify, timeout
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or CA bundle from the environment: the runbook decides

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if url.startswith(self.public):
            url = self.api_url + url[len(self.public):]
        kwargs.setdefault("timeout", self.timeout)
        kwargs["verify"] = self.verify
        return self.session.request(method, url, **kwargs)

    def close(self) -> None:
        self.session.close()


@dataclass(frozen=True)
class Op:
    """One record write: create, delete, or retime (a TTL changed in place; `old_ttl` for the undo)."""

    op: str
    name: str
    rtype: str
    content: str
    ttl: int
    old_ttl: int = 0

    def inverse(self) -> Op:
        if self.op == "retime":
            return Op("retime", self.name, self.rtype, self.content, self.old_ttl, self.ttl)
        return Op("delete" if self.op == "create" else "create", self.name, self.rtype, self.content, self.ttl)

    def __str__(self) -> str:
        return f"{self.op} {self.name} {self.rtype} {self.content}" + (f" TTL {self.ttl}" if self.op != "delete" else "")


class LexiconProvider(DNSProvider):
    """One zone at an HTTP DNS API, read and written through a lexicon provider."""

    content_origin: str  # what a relative CNAME target in the API's answers is relative to

    def __init__(self, config: DNSConfig, secret: Callable[[str], str], path: Callable[[str], Path]) -> None:
        self.config = config
        self.zone = config.zone.rstrip(".") + "."
        self.name = config.provider
        self._secret = secret
        ca = str(path(config.ca_file)) if config.ca_file else True
        self._transport = _Transport(PUBLIC_API[self.name], config.api_url, ca, config.timeout_s)
        self._module: ModuleType = importlib.import_module(f"lexicon._private.providers.{self.name}")
        self._options: dict[str, Any] = {}
        self._provider: Any = None
        self.where = config.api_url or PUBLIC_API[self.name]

    # -- lexicon ------------------------------------------------------------------------------------
    def _credentials(self) -> dict[str, Any]:
        if self.name == "transip":
            t = self.config.transip
            assert t is not None
            pem = self._secret(t.private_key)
            return {"auth_username": t.username, "auth_key_is_global": t.global_key,
                    "auth_api_key": "base64::" + base64.b64encode(pem.encode()).decode()}
        c = self.config.cloudflare
        assert c is not None
        out: dict[str, Any] = {"auth_token": self._secret(c.token)}
        if c.zone_id:
            out["zone_id"] = c.zone_id
        return out

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Run lexicon with our transport in place; its errors become one line naming the provider."""
        with _PATCH_LOCK:
            saved = getattr(self._module, "requests")  # noqa: B009 - the seam named in the module docstring
            setattr(self._module, "requests", self._transport)  # noqa: B010
            try:
                yield
            except requests.exceptions.SSLError as exc:
                raise PermanentError(f"{self.name} API at {self.where}: TLS verification failed ({_reason(exc)}): "
                                     "check environment.dns.ca_file") from None
            except requests.exceptions.HTTPError as exc:
                raise self._http_error(exc, what) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                raise TemporaryError(f"{self.name} API at {self.where}: {what}: {exc.__class__.__name__}") from None
            except (PermanentError, TemporaryError):
                raise
            except Exception as exc:  # lexicon raises bare Exception/LexiconError for its own refusals
                raise PermanentError(f"{self.name} API at {self.where}: {what}: {exc}") from None
            finally:
                setattr(self._module, "requests", saved)  # noqa: B010

    def _http_error(self, exc: requests.exceptions.HTTPError, what: str) -> Exception:
        resp = exc.response
        status = resp.status_code if resp is not None else 0
        detail = _api_message(resp)
        where = f"{self.name} API at {self.where}"
        if status in (401, 403):
            return PermanentError(f"{where} rejected the credentials (HTTP {status}{detail}): check "
                                  f"environment.dns.{self.name} and its secret")
        if status == 429 or status >= 500:
            return TemporaryError(f"{where}: {what}: HTTP {status}{detail}")
        return PermanentError(f"{where}: {what}: HTTP {status}{detail}")

    def _api(self) -> Any:
        if self._provider is None:
            self._options = {"provider_name": self.name, "domain": self.zone.rstrip("."), "ttl": 3600,
                             self.name: self._credentials()}
            with self._calling("sign in"):
                provider = self._module.Provider(ConfigResolver().with_dict(self._options))
                provider.authenticate()
            self._provider = provider
        return self._provider

    # -- reading --------------------------------------------------------------------------------------
    def read(self, name: str, rtype: str) -> RRSet | None:
        api = self._api()
        with self._calling(f"listing {name} {rtype}"):
            records = api.list_records(rtype=rtype, name=name.rstrip("."))
        want = name.rstrip(".").lower()
        found = [r for r in records if r["type"].upper() == rtype.upper() and r["name"].rstrip(".").lower() == want]
        if not found:
            return None
        # One TTL per record at some providers: the longest is the one a resolver may still hold.
        return RRSet.make(name, rtype, max(int(r["ttl"]) for r in found),
                          [self._absolute_content(rtype, r["content"]) for r in found])

    def _absolute_content(self, rtype: str, content: str) -> str:
        if rtype.upper() == "CNAME" and not content.endswith("."):
            return content + "." if self.name == "cloudflare" else f"{content}.{self.zone}"
        return content

    def authoritative_servers(self) -> list[Server]:
        return authoritative_from_config(self.config, self.zone)

    # -- writing ----------------------------------------------------------------------------------------
    def _content_out(self, rtype: str, rdata: str) -> str:
        # Cloudflare takes host names without the root dot; TransIP reads a name without one as relative.
        return rdata.rstrip(".") if rtype == "CNAME" and self.name == "cloudflare" else rdata

    def apply(self, changes: Sequence[Change]) -> None:
        writing = [c for c in changes if c.writes]
        if not writing:
            return
        now = {c.key: self.read(c.name, c.rtype) for c in changes}
        stale = [f"{c.name} {c.rtype}: expected {show(c.expect)}, found {show(now[c.key])}"
                 for c in changes if not same(now[c.key], c.expect)]
        if stale:
            raise ConflictError(f"{self.name}: a record changed since it was read: {'; '.join(stale)}")
        done: list[Op] = []
        try:
            for op in self._operations(writing, now):
                self._do(op)
                done.append(op)
        except (PermanentError, TemporaryError) as exc:
            undone = self._undo(done)
            raise type(exc)(f"{exc}; {undone}") from None

    def _operations(self, writing: Sequence[Change], now: dict[str, RRSet | None]) -> list[Op]:
        """Record writes: deletes of a type the name gives up first (a CNAME shares its name with nothing),
        then per record set the new records before the old ones go. A TTL alone changes in place where the
        API can (Cloudflare's PUT); at TransIP by delete and create (lexicon has no other way)."""
        first: list[Op] = []
        adds: list[Op] = []
        last: list[Op] = []
        in_place = self.name == "cloudflare"
        for c in writing:
            cur, new = now[c.key], c.new
            old_rd = set(cur.rdatas) if cur else set()
            new_rd = set(new.rdatas) if new else set()
            old_ttl = cur.ttl if cur else 0
            new_ttl = new.ttl if new else 0
            retimed = cur is not None and new is not None and cur.ttl != new.ttl
            for rd in sorted(old_rd):
                if rd in new_rd and retimed and in_place:
                    adds.append(Op("retime", c.name, c.rtype, rd, new_ttl, old_ttl))
                elif rd not in new_rd or retimed:
                    (first if new is None or rd in new_rd else last).append(
                        Op("delete", c.name, c.rtype, rd, old_ttl))
            for rd in sorted(new_rd):
                if rd not in old_rd or (retimed and not in_place):
                    adds.append(Op("create", c.name, c.rtype, rd, new_ttl))
        return first + adds + last

    def _find(self, api: Any, op: Op) -> str:
        """The identifier of the record as the API lists it. Lexicon's delete by content matches the API's own
        spelling only (a relative CNAME target at TransIP), and deletes nothing otherwise."""
        want = _canonical(op.rtype, op.content)
        ids = [r["id"] for r in api.list_records(rtype=op.rtype, name=op.name.rstrip("."))
               if r["type"].upper() == op.rtype.upper()
               and _canonical(op.rtype, self._absolute_content(op.rtype, r["content"])) == want]
        if not ids:
            raise TemporaryError(f"{self.name}: {op.name} {op.rtype} {op.content} vanished before it was changed")
        return str(ids[0])

    def _do(self, op: Op) -> None:
        api = self._api()
        with self._calling(str(op)):
            if op.op == "create":
                self._options["ttl"] = op.ttl
                api.create_record(op.rtype, op.name.rstrip("."), self._content_out(op.rtype, op.content))
            elif op.op == "retime":
                self._options["ttl"] = op.ttl
                api.update_record(self._find(api, op), op.rtype, op.name.rstrip("."),
                                  self._content_out(op.rtype, op.content))
            else:
                api.delete_record(identifier=self._find(api, op))

    def _undo(self, done: list[Op]) -> str:
        failed = []
        for op in reversed(done):
            try:
                self._do(op.inverse())
            except (PermanentError, TemporaryError) as exc:
                failed.append(f"{op} ({exc})")
        if not done:
            return "nothing had been written"
        if failed:
            return f"undoing the {len(done)} writes made failed for: {'; '.join(failed)}"
        return f"the {len(done)} writes made were undone"

    def close(self) -> None:
        self._transport.close()


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("CERTIFICATE_VERIFY_FAILED", "Hostname mismatch", "certificate verify failed"):
        if marker in text:
            i = text.index(marker)
            return text[i:i + 120].split("')")[0].split("\")")[0]
    return exc.__class__.__name__


def _api_message(resp: requests.Response | None) -> str:
    """The API's own error text (TransIP: {"error": ...}; Cloudflare: {"errors": [{"message": ...}]})."""
    if resp is None:
        return ""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            return f": {body['error'][:200]}"
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return f": {str(errors[0].get('message', ''))[:200]}"
    return ""
