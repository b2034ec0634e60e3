"""What the openbao steps share: their parameters, which paths a `paths` filter selects, the run's
clients of both sides (`Bao`), and the value-free comparison that gates them (`parity`, `gate`)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from migrator import redact
from migrator.adapters import resources
from migrator.adapters.openbao import (
    client_for,
    inventory,
    kv2_mounts,
    list_paths,
    source_tunnel,
)
from migrator.errors import PermanentError
from migrator.steps.base import (
    StepContext,
    StrictModel,
)

if TYPE_CHECKING:
    from migrator.adapters.openbao import BaoClient, Inventory
    from migrator.runbook.environment import OpenBaoConfig, OpenBaoEndpoint

Keys = list[str] | str | None


class CompareParams(StrictModel):
    mounts: list[str] | None = None  # KV v2 mounts; default: every KV v2 mount (of both sides)
    # Only these KV paths, as MOUNT/PATH patterns (`secret/acme/*`: everything under acme/ in the
    # mount `secret`; `*` also matches `/`); their mounts are the ones compared or copied. Default:
    # every path. Policies and AppRole roles are not filtered (turn them off with policies/approle).
    paths: list[str] | None = None
    policies: bool = True
    approle: bool = True
    allow_extra_on_target: bool = False  # paths/policies only on the target do not fail the gate

    @model_validator(mode="after")
    def _patterns(self) -> CompareParams:
        for pattern in self.paths or []:
            mount, _, rest = pattern.partition("/")
            if not mount or not rest or any(c in mount for c in "*?["):
                raise ValueError(f"paths: {pattern!r} is not MOUNT/PATH (e.g. secret/acme/*): the mount comes "
                                 "first, without wildcards")
        if self.paths is not None and not self.paths:
            raise ValueError("paths: an empty list selects nothing; leave it out to select every path")
        return self


class PathFilter:
    """Which (mount, path) pairs a step's `paths` patterns select (every pair when there are none)."""

    def __init__(self, patterns: list[str] | None) -> None:
        self.patterns = list(patterns or [])

    def __call__(self, mount: str, path: str) -> bool:
        return not self.patterns or any(fnmatch.fnmatchcase(f"{mount}/{path}", p) for p in self.patterns)

    def mounts(self, present: list[str] | set[str], step_id: str) -> list[str]:
        """The mounts the patterns name: for each, the longest mount it starts with."""
        out: list[str] = []
        for pattern in self.patterns:
            found = [m for m in present if pattern.startswith(m.rstrip("/") + "/")]
            if not found:
                raise PermanentError(f"{step_id}.with.paths: {pattern} names no KV v2 mount on the source "
                                     f"(found: {', '.join(sorted(present)) or 'none'})")
            out.append(max(found, key=len))
        return sorted(set(out))

    def prefix(self, mount: str) -> str:
        """The folder every selected path of `mount` is under (what to list), '' for the whole mount."""
        heads = []
        for pattern in self.patterns:
            if pattern.startswith(mount.rstrip("/") + "/"):
                rest = pattern[len(mount.rstrip("/")) + 1:]
                literal = re.split(r"[*?\[]", rest, maxsplit=1)[0]
                heads.append(literal.rpartition("/")[0] + "/" if "/" in literal else "")
        if not heads or "" in heads:
            return ""
        common = os.path.commonprefix(heads)
        return common[: common.rfind("/") + 1]

    def paths(self, client: BaoClient, mount: str) -> list[str]:
        return [p for p in list_paths(client, mount, self.prefix(mount)) if self(mount, p)]


class MigrateParams(CompareParams):
    strategy: Literal["kv-copy", "raft-snapshot"]
    # kv-copy
    on_conflict: Literal["fail", "overwrite"] = "fail"  # a target path that exists and differs
    deleted_versions: Literal["recover", "placeholder"] = "recover"
    # raft-snapshot: ${secrets.x} each, or one secret holding a JSON list. Never logged.
    unseal_keys: Keys = None  # the SOURCE's keys: the restored target only opens with them
    target_unseal_keys: Keys = None  # the target's own keys, for rollback to its pre-restore snapshot
    unseal_wait_s: float = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _by_strategy(self) -> MigrateParams:
        if self.strategy == "raft-snapshot" and not self.unseal_keys:
            raise ValueError("raft-snapshot needs unseal_keys (the source's unseal keys, by secret reference)")
        if self.strategy == "raft-snapshot" and self.paths:
            raise ValueError("paths: a raft snapshot restores the whole store; a path filter needs strategy kv-copy")
        if self.strategy == "kv-copy" and (self.unseal_keys or self.target_unseal_keys):
            raise ValueError("unseal keys are for strategy raft-snapshot only")
        return self


class VerifyParams(CompareParams):
    # After a raft-snapshot the target only knows the source's tokens: name the secret to use there.
    target_token: str | None = None


def keys_of(value: Keys) -> list[str]:
    """Unseal keys from a list of values or one JSON list; each registered for masking."""
    items = [value] if isinstance(value, str) else list(value or [])
    out: list[str] = []
    for item in items:
        text = item.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise PermanentError("unseal keys: a value starts like a JSON list but does not parse") from None
            out += [str(k) for k in parsed]
        elif text:
            out.append(text)
    for key in out:
        redact.register(key)
    return out


# -- connections -----------------------------------------------------------------------------------
class Bao:
    """The clients a step needs, shared through ctx.resource for the run."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        env = ctx.runbook.environment.openbao
        if env is None:
            raise PermanentError(f"{ctx.step_id}: the runbook has no environment.openbao (source, target)")
        self.env: OpenBaoConfig = env

    def _via(self) -> tuple[str, int] | None:
        return source_tunnel(self.ctx.resource, self.ctx.runbook)

    def _client(self, key: str, endpoint: OpenBaoEndpoint, token_secret: str | None,
                via: tuple[str, int] | None) -> BaoClient:
        token = self.ctx.secret(token_secret) if token_secret else None
        return self.ctx.resource(key, lambda: client_for(endpoint, None, via, token=token))  # type: ignore[no-any-return]

    def source(self) -> BaoClient:
        return self._client("openbao:source-step", self.env.source, self.env.source.token, self._via())

    def target(self, token_secret: str | None = None) -> BaoClient:
        name = token_secret or self.env.target.token
        via = resources.forwarded(self.ctx.resource, self.ctx.runbook, self.env.target.port_forward)
        return self._client(f"openbao:target:{name}", self.env.target, name, via)

    def target_as_source(self) -> BaoClient:
        """The target after a raft restore: it holds the source's data, so the source's token."""
        return self.target(self.env.source.token)


def mounts_to_compare(params: CompareParams, source: BaoClient, target: BaoClient) -> list[str]:
    if params.mounts:
        return list(params.mounts)
    if params.paths:
        return PathFilter(params.paths).mounts(set(kv2_mounts(source)), "openbao")
    found = set(kv2_mounts(source))
    if not params.allow_extra_on_target:
        found |= set(kv2_mounts(target))
    return sorted(found)


def parity(params: CompareParams, source: BaoClient, target: BaoClient) -> tuple[list[str], Inventory]:
    """Differences between both sides (names only), and the source's inventory."""
    mounts = mounts_to_compare(params, source, target)
    selected = PathFilter(params.paths)
    a = inventory(source, mounts, params.policies, params.approle, selected, selected.prefix)
    b = inventory(target, mounts, params.policies, params.approle, selected, selected.prefix)
    return a.differences(b, params.allow_extra_on_target), a


def gate(params: CompareParams, source: BaoClient, target: BaoClient) -> Inventory:
    diffs, inv = parity(params, source, target)
    if diffs:
        shown = "; ".join(diffs[:20]) + (f"; and {len(diffs) - 20} more" if len(diffs) > 20 else "")
        raise PermanentError(f"OpenBao parity: {len(diffs)} difference(s): {shown}")
    return inv
