"""The two ways openbao.migrate copies OpenBao: `KvCopy` (KV v2 version by version, then ACL policies
and AppRole roles, recording what it created and overwrote) and `RaftSnapshot` (force-restore a source
snapshot, unseal it with the source's keys, after keeping the target's own snapshot for rollback).
Each has plan, apply and rollback; the step (steps/openbao.py) picks one by `strategy`."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from migrator.adapters import openbao as ob
from migrator.adapters.openbao import delete_versions, kv2_mounts, undelete
from migrator.errors import PermanentError
from migrator.steps.base import Plan
from migrator.steps.openbao_common import Bao, PathFilter, keys_of, parity

if TYPE_CHECKING:
    from migrator.adapters.openbao import BaoClient
    from migrator.steps.openbao import OpenBaoMigrate

# -- kv-copy ----------------------------------------------------------------------------------------
Pair = tuple[str, str]  # (mount, path) or (approle mount, role): mounts may contain '/'


class _Survey:
    """A read-only look at both sides: what the copy would create, leave alone, or overwrite."""

    def __init__(self, copy: KvCopy) -> None:
        src, tgt = copy.src, copy.tgt
        self.mounts = copy.mounts()
        tgt_mounts = ob.kv2_mounts(tgt)
        self.mounts_missing = [m for m in self.mounts if m not in tgt_mounts]
        self.paths: dict[Pair, str] = {}  # -> new | same | differs
        self.versions = self.deleted = 0
        for mount in self.mounts:
            for path in copy.selected.paths(src, mount):
                sd = ob.dump(src, mount, path)
                if sd is None:
                    continue
                self.versions += len(sd.versions)
                self.deleted += sum(v.state == "deleted" for v in sd.versions)
                td = ob.dump(tgt, mount, path) if mount in tgt_mounts else None
                self.paths[(mount, path)] = "new" if td is None else "same" if td.digest() == sd.digest() else "differs"
        self.policies: dict[str, str] = {}
        if copy.p.policies:
            tgt_policies = ob.policies(tgt)
            for name, text in ob.policies(src).items():
                self.policies[name] = ("new" if name not in tgt_policies else
                                       "same" if tgt_policies[name] == text else "differs")
        self.roles: dict[Pair, str] = {}
        if copy.p.approle:
            tgt_auth = ob.approle_mounts(tgt)
            for mount in ob.approle_mounts(src):
                tgt_roles = ob.approle_roles(tgt, mount) if mount in tgt_auth else {}
                for name, role in ob.approle_roles(src, mount).items():
                    self.roles[(mount, name)] = ("new" if name not in tgt_roles else
                                                 "same" if ob.sha(tgt_roles[name]) == ob.sha(role) else "differs")
        self.other_engines, self.other_auth = ob.other_mounts(src)

    def conflicts(self) -> list[str]:
        return ([f"secret {m}/{p}" for (m, p), s in self.paths.items() if s == "differs"]
                + [f"policy {n}" for n, s in self.policies.items() if s == "differs"]
                + [f"approle role {m}/{n}" for (m, n), s in self.roles.items() if s == "differs"])


class KvCopy:
    def __init__(self, step: OpenBaoMigrate) -> None:
        self.step, self.ctx, self.p = step, step.ctx, step.params
        self.bao = Bao(step.ctx)
        self.selected = PathFilter(self.p.paths)

    @property
    def src(self) -> BaoClient:
        return self.bao.source()

    @property
    def tgt(self) -> BaoClient:
        return self.bao.target()

    def mounts(self) -> list[str]:
        present = kv2_mounts(self.src)
        if self.p.paths and not self.p.mounts:
            return self.selected.mounts(set(present), self.ctx.step_id)
        for m in self.p.mounts or []:
            if m not in present:
                raise PermanentError(f"{self.ctx.step_id}.with.mounts: {m} is not a KV v2 mount on the source "
                                     f"(found: {', '.join(sorted(present)) or 'none'})")
        return list(self.p.mounts or sorted(present))

    # -- plan ----------------------------------------------------------------------------------
    def plan(self) -> Plan:
        sv = _Survey(self)
        plan = Plan()
        for m in sv.mounts_missing:
            plan.change(f"enable KV v2 at {m}/ on the target")
        new = [f"{m}/{p}" for (m, p), s in sv.paths.items() if s == "new"]
        plan.change(f"copy {len(new)} new path(s) ({sv.versions} versions in all on the source), version by "
                    "version with metadata; destroyed versions as destroyed placeholders")
        for label, items in (("secret", {f"{m}/{p}": s for (m, p), s in sv.paths.items()}),
                             ("policy", sv.policies), ("approle role", {f"{m}/{n}": s for (m, n), s in sv.roles.items()})):
            for name, state in items.items():
                if state == "differs":
                    verb = "overwrite (backed up for rollback)" if self.p.on_conflict == "overwrite" else "CONFLICT"
                    plan.change(f"{verb}: {label} {name} exists on the target and differs")
                elif state == "new" and label != "secret":
                    plan.change(f"create {label} {name}")
        if sv.deleted and self.p.deleted_versions == "recover":
            plan.change(f"{sv.deleted} deleted version(s) are briefly undeleted on the SOURCE to read them, then "
                        "deleted again")
        elif sv.deleted:
            plan.unknowns.append(f"{sv.deleted} deleted version(s) get placeholder data (deleted_versions: placeholder)")
        if sv.roles:
            plan.unknowns.append("AppRole secret IDs are not copied (only role settings and role IDs): re-issue them "
                                 f"for {', '.join(sorted(f'{m}/{n}' for m, n in sv.roles))}")
        if sv.other_engines or sv.other_auth:
            plan.unknowns.append("not migrated: " + ", ".join(
                [f"secret engine {e}" for e in sv.other_engines] + [f"auth method {a}" for a in sv.other_auth]))
        plan.unknowns.append("created_time of versions cannot be preserved (it is the copy's time on the target)")
        return plan

    # -- apply ---------------------------------------------------------------------------------
    def _pairs(self, name: str) -> list[Pair]:
        return [(a, b) for a, b in self.ctx.facts.get(name) or []]

    def _add(self, name: str, pair: Pair) -> None:
        self.ctx.record(**{name: [*self.ctx.facts.get(name, []), list(pair)]})

    def _source_recover(self, mount: str) -> Any:
        def recover(path: str, version: int, read: Any) -> Any:
            self.ctx.record(recovering=[mount, path, version])  # so a crash here is repaired on resume/rollback
            undelete(self.src, mount, path, version)
            try:
                return read()
            finally:
                delete_versions(self.src, mount, path, [version])
                self.ctx.record(recovering=None)

        return recover

    def _target_recover(self, mount: str) -> Any:
        def recover(path: str, version: int, read: Any) -> Any:
            undelete(self.tgt, mount, path, version)
            try:
                return read()
            finally:
                delete_versions(self.tgt, mount, path, [version])

        return recover

    def _repair_source(self) -> None:
        rec = self.ctx.facts.get("recovering")
        if rec:
            delete_versions(self.src, rec[0], rec[1], [int(rec[2])])
            self.ctx.record(recovering=None)

    def _prepare(self) -> None:
        sv = _Survey(self)
        conflicts = sv.conflicts()
        if conflicts and self.p.on_conflict == "fail":
            raise PermanentError(f"{self.ctx.step_id}: {len(conflicts)} item(s) exist on the target and differ: "
                                 f"{', '.join(conflicts[:20])}; set on_conflict: overwrite (they are backed up "
                                 "for rollback) or clear them on the target")
        over_paths = [k for k, s in sv.paths.items() if s == "differs"]
        over_pol = [n for n, s in sv.policies.items() if s == "differs"]
        over_roles = [k for k, s in sv.roles.items() if s == "differs"]
        backup_file = backup_sha = None
        if conflicts:  # values go to a 0600 file under the state dir, never into the facts
            tgt_pol = ob.policies(self.tgt)
            backup = {
                "kv": [d.to_json() for m, p in over_paths if (d := ob.dump(self.tgt, m, p, self._target_recover(m)))],
                "policies": {n: tgt_pol[n] for n in over_pol},
                "roles": [{"mount": m, "name": n, "role": ob.approle_roles(self.tgt, m)[n]} for m, n in over_roles],
            }
            backup_file, backup_sha = self.step.write_private("backup.json", ob.canonical(backup))
        self.ctx.record(strategy="kv-copy", prepared=True, backup_file=backup_file, backup_sha256=backup_sha,
                        overwritten=[list(k) for k in over_paths], policies_overwritten=over_pol,
                        roles_overwritten=[list(k) for k in over_roles], created=[], done=[], policies_created=[],
                        roles_created=[], mounts_enabled=[], auth_enabled=[], mount_config_before={},
                        versions_written=0)

    def apply(self) -> None:
        started = time.monotonic()
        self._repair_source()
        if not self.ctx.facts.get("prepared"):
            self._prepare()
        src, tgt = self.src, self.tgt
        mounts = self.mounts()
        # Mounts and their KV config.
        src_mounts, tgt_mounts = ob.kv2_mounts(src), ob.kv2_mounts(tgt)
        for m in mounts:
            if m not in tgt_mounts:
                self.ctx.record(mounts_enabled=[*self.ctx.facts["mounts_enabled"], m])
                desc = src_mounts[m].get("description", "")
                ob.call(f"enable {m}/", tgt.sys.enable_secrets_engine, "kv", path=m, description=desc,
                        options={"version": "2"})
                ob.wait_kv_ready(tgt, m)
            want, have = ob.mount_config(src, m), ob.mount_config(tgt, m)
            if want != have:
                if m not in self.ctx.facts["mounts_enabled"] and m not in self.ctx.facts["mount_config_before"]:
                    self.ctx.record(mount_config_before={**self.ctx.facts["mount_config_before"], m: have})
                ob.set_mount_config(tgt, m, want)
        # Paths, one by one; progress in the facts.
        done = set(self._pairs("done"))
        ours = set(self._pairs("created")) | set(self._pairs("overwritten"))
        todo = [(m, p) for m in mounts for p in self.selected.paths(src, m) if (m, p) not in done]
        bar = self.ctx.progress("openbao kv-copy", total=len(todo), unit="paths")
        for mount, path in todo:
            self._copy_path(mount, path, ours)
            bar.advance(1)
        if self.p.policies:
            self._policies()
        if self.p.approle:
            self._roles()
        self.ctx.record(paths_copied=len(self._pairs("done")), seconds=round(time.monotonic() - started, 3))

    def _copy_path(self, mount: str, path: str, ours: set[Pair]) -> None:
        recover = self._source_recover(mount) if self.p.deleted_versions == "recover" else None
        sd = ob.dump(self.src, mount, path, recover)
        td = ob.dump(self.tgt, mount, path)
        if sd is None or (td is not None and td.digest() == sd.digest()):
            return  # gone meanwhile, or already equal: nothing to write
        if td is not None:
            if (mount, path) not in ours:
                raise PermanentError(f"{self.ctx.step_id}: {mount}/{path} appeared on the target during the copy "
                                     "and differs; not overwritten")
            ob.delete_path(self.tgt, mount, path)  # ours: a partial write of an earlier attempt, or backed up
        else:
            if (mount, path) not in ours:
                self._add("created", (mount, path))  # before the write: rollback must know it is ours
                ours.add((mount, path))
        ob.write_dump(self.tgt, sd)
        self.ctx.record(done=[*self.ctx.facts["done"], [mount, path]],
                        versions_written=self.ctx.facts.get("versions_written", 0) + len(sd.versions))
        self.ctx.failpoint("after-path")

    def _policies(self) -> None:
        theirs = ob.policies(self.tgt)
        mine = ob.policies(self.src)
        for name, text in mine.items():
            if theirs.get(name) == text:
                continue
            if name not in theirs and name not in self.ctx.facts["policies_created"]:
                self.ctx.record(policies_created=[*self.ctx.facts["policies_created"], name])
            elif name in theirs and name not in self.ctx.facts["policies_overwritten"] \
                    and name not in self.ctx.facts["policies_created"]:
                raise PermanentError(f"{self.ctx.step_id}: policy {name} changed on the target during the copy")
            ob.call(f"write policy {name}", self.tgt.sys.create_or_update_acl_policy, name, text)
        self.ctx.record(policies_copied=len(mine))

    def _roles(self) -> None:
        tgt_auth = ob.approle_mounts(self.tgt)
        count = 0
        for mount in ob.approle_mounts(self.src):
            if mount not in tgt_auth:
                self.ctx.record(auth_enabled=[*self.ctx.facts["auth_enabled"], mount])
                ob.call(f"enable auth {mount}/", self.tgt.sys.enable_auth_method, "approle", path=mount)
            theirs = ob.approle_roles(self.tgt, mount)
            for name, role in ob.approle_roles(self.src, mount).items():
                count += 1
                if name in theirs and ob.sha(theirs[name]) == ob.sha(role):
                    continue
                created = self._pairs("roles_created")
                if name not in theirs and (mount, name) not in created:
                    self._add("roles_created", (mount, name))
                elif name in theirs and (mount, name) not in created + self._pairs("roles_overwritten"):
                    raise PermanentError(f"{self.ctx.step_id}: role {mount}/{name} changed on the target during the copy")
                ob.write_role(self.tgt, mount, name, role)
        self.ctx.record(roles_copied=count)

    # -- rollback ------------------------------------------------------------------------------
    def rollback(self) -> None:
        f = self.ctx.facts
        self._repair_source()
        if not f.get("prepared"):
            return  # apply never changed the target
        tgt = self.tgt
        backup: dict[str, Any] = {"kv": [], "policies": {}, "roles": []}
        if f.get("backup_file"):
            backup = json.loads(self.step.read_private(f["backup_file"], f["backup_sha256"]))
        enabled = set(f.get("mounts_enabled", []))
        for mount, path in reversed(self._pairs("created")):
            if mount not in enabled:  # disabling the mount removes those anyway
                ob.delete_path(tgt, mount, path)
        for obj in backup["kv"]:
            d = ob.SecretDump.from_json(obj)
            ob.delete_path(tgt, d.mount, d.path)
            ob.write_dump(tgt, d)
        for name in f.get("policies_created", []):
            ob.call(f"delete policy {name}", tgt.sys.delete_acl_policy, name)
        for name, text in backup["policies"].items():
            ob.call(f"restore policy {name}", tgt.sys.create_or_update_acl_policy, name, text)
        auth_enabled = set(f.get("auth_enabled", []))
        for mount, name in self._pairs("roles_created"):
            if mount not in auth_enabled:
                ob.call(f"delete role {name}", tgt.delete, f"auth/{mount}/role/{name}")
        for item in backup["roles"]:
            ob.write_role(tgt, item["mount"], item["name"], item["role"])
        for mount in auth_enabled:
            ob.call(f"disable auth {mount}/", tgt.sys.disable_auth_method, mount)
        for mount, cfg in (f.get("mount_config_before") or {}).items():
            ob.set_mount_config(tgt, mount, cfg)
        for mount in enabled:
            ob.call(f"disable {mount}/", tgt.sys.disable_secrets_engine, mount)
        self.ctx.record(prepared=False, created=[], done=[], overwritten=[], policies_created=[],
                        policies_overwritten=[], roles_created=[], roles_overwritten=[], mounts_enabled=[],
                        auth_enabled=[], mount_config_before={})


# -- raft-snapshot ----------------------------------------------------------------------------------
class RaftSnapshot:
    def __init__(self, step: OpenBaoMigrate) -> None:
        self.step, self.ctx, self.p = step, step.ctx, step.params
        self.bao = Bao(step.ctx)

    def plan(self) -> Plan:
        env = self.bao.env
        keys = keys_of(self.p.unseal_keys)
        plan = Plan(changes=[
            f"snapshot the target {env.target.address} into a 0600 file under the state dir (for rollback)",
            f"snapshot the source {env.source.address} and force-restore it into the target",
            f"unseal the target with the source's unseal keys ({len(keys)} given)",
        ])
        plan.unknowns.append("the target's own data, tokens, policies and auth methods are replaced by the source's: "
                             "use the source's token on the target afterwards")
        if not self.p.target_unseal_keys:
            plan.unknowns.append("no target_unseal_keys: a rollback cannot unseal the target's pre-restore snapshot")
        return plan

    def _reopen(self, client: BaoClient, keys: list[str], token_client: BaoClient, what: str) -> None:
        """After a restore the node seals itself (shortly): wait for that, bounded, then unseal."""
        deadline = time.monotonic() + self.p.unseal_wait_s
        while time.monotonic() < deadline:
            if ob.sealed(client):
                ob.unseal_with(client, keys, what, wait_s=max(1.0, deadline - time.monotonic()))
                return
            time.sleep(0.1)
        if not ob.token_valid(token_client):
            raise PermanentError(f"{what}: the target neither sealed nor accepts the expected token after "
                                 f"{self.p.unseal_wait_s:g}s")

    def apply(self) -> None:
        started = time.monotonic()
        keys = keys_of(self.p.unseal_keys)
        src, own, as_src = self.bao.source(), self.bao.target(), self.bao.target_as_source()
        if not self.ctx.facts.get("pre_snapshot"):
            if ob.sealed(own):
                raise PermanentError(f"{self.ctx.step_id}: the target {self.bao.env.target.address} is sealed; "
                                     "unseal it before the migration (its snapshot is taken first, for rollback)")
            snap = ob.take_snapshot(own)
            path, digest = self.step.write_private("pre-restore.snap", snap)
            self.ctx.record(strategy="raft-snapshot", pre_snapshot=path, pre_snapshot_sha256=digest,
                            pre_snapshot_bytes=len(snap))
        elif ob.sealed(own):  # resumed after a restore: it opens with the source's keys
            ob.unseal_with(own, keys, "unseal after restore (resumed)", wait_s=self.p.unseal_wait_s)
            if not parity(self.p, src, as_src)[0]:
                self.ctx.record(restored_at=time.time())
                return
        snap = ob.take_snapshot(src)
        self.ctx.record(restore_started_at=time.time(), snapshot_bytes=len(snap))
        ob.force_restore(as_src if ob.token_valid(as_src) else own, snap)
        self.ctx.failpoint("after-restore")
        self._reopen(own, keys, as_src, "unseal after restore")
        self.ctx.record(restored_at=time.time(), seconds=round(time.monotonic() - started, 3))

    def rollback(self) -> None:
        f = self.ctx.facts
        if not f.get("pre_snapshot"):
            return  # nothing was restored
        keys = keys_of(self.p.target_unseal_keys)
        if not keys:
            raise PermanentError(f"{self.ctx.step_id}: rollback needs with.target_unseal_keys (the target's own "
                                 "unseal keys) to open its pre-restore snapshot")
        data = self.step.read_private(f["pre_snapshot"], f["pre_snapshot_sha256"])
        own, as_src = self.bao.target(), self.bao.target_as_source()
        if ob.sealed(own):  # crashed between restore and unseal: open it with the source's keys first
            ob.unseal_with(own, keys_of(self.p.unseal_keys), "unseal before rollback", wait_s=self.p.unseal_wait_s)
        ob.force_restore(as_src if ob.token_valid(as_src) else own, data)
        self._reopen(own, keys, own, "unseal after rollback")
        self.ctx.record(pre_snapshot=None, pre_snapshot_sha256=None, restored_at=None, restore_started_at=None,
                        rolled_back_from=f["pre_snapshot"])
