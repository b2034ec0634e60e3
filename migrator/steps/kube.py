"""Cluster step types: kube.namespaces, kube.network-policies, kube.rbac, kube.apply, kube.storage-check.

They share one machinery (`ManifestStep`): render the manifests with the runbook's variables, record for
every object whether it existed (and its prior form) BEFORE applying, server-side apply as field manager
`migrator`, and roll back by deleting what did not exist and restoring what did. `check` compares the
fields we set with the live objects, so a second run applies nothing (resourceVersions stay the same).
Secrets (kube.secret, in kube_secret.py) are never recorded: only a digest and a 0600 backup file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from migrator.adapters import resources
from migrator.adapters.kube import WORKLOADS, ApiError, Ref, kind_of
from migrator.errors import GateNotReady, PermanentError
from migrator.manifests import render
from migrator.runbook.loader import params_model
from migrator.steps.base import Check, Plan, Step, StrictModel, state_file, step_type
from migrator.store.atomic import write_atomic
from migrator.store.state import StateStore

if TYPE_CHECKING:
    from migrator.adapters.kube import KubeCluster
    from migrator.runbook.model import Runbook
    from migrator.steps.base import StepContext

# Server-set metadata: never part of what we compare, record or restore.
SERVER_META = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink",
               "deletionTimestamp", "deletionGracePeriodSeconds")


def cluster(ctx: StepContext) -> KubeCluster:
    """The run's shared API client, from environment.target (or KUBECONFIG)."""
    return resources.kube(ctx.resource, ctx.runbook)


def strip(live: dict[str, Any]) -> dict[str, Any]:
    """The object as we would write it back: no status, no server-set metadata."""
    out = {k: v for k, v in live.items() if k != "status"}
    out["metadata"] = {k: v for k, v in (live.get("metadata") or {}).items() if k not in SERVER_META}
    return out


def difference(want: Any, live: Any, path: str = "") -> str | None:
    """The first field we set whose live value differs (None: every field we set matches).

    Only the fields in `want` count: the server adds defaults, status and metadata of its own."""
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return path or "."
        for key, value in want.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in live:
                if value in ({}, [], None):
                    continue
                return sub
            found = difference(value, live[key], sub)
            if found:
                return found
        return None
    if isinstance(want, list):
        if not isinstance(live, list) or len(want) != len(live):
            return path
        for i, (w, v) in enumerate(zip(want, live, strict=True)):
            found = difference(w, v, f"{path}[{i}]")
            if found:
                return found
        return None
    if want == live or (not isinstance(want, bool) and str(want) == str(live)):
        return None
    return path


def secret_digest(data: dict[str, str] | None, type_: str | None = None) -> str:
    """sha256 over the base64 data (and type): what check compares and the state records."""
    canon = json.dumps({"type": type_ or "Opaque", "data": dict(sorted((data or {}).items()))}, sort_keys=True)
    return "sha256:" + hashlib.sha256(canon.encode()).hexdigest()


def secret_data_b64(obj: dict[str, Any]) -> dict[str, str]:
    """A Secret's data as base64, stringData folded in (as the API server does)."""
    data = dict(obj.get("data") or {})
    for key, value in (obj.get("stringData") or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    return data


def backup_path(ctx: StepContext, ref: Ref) -> Path:
    safe = f"{ref.kind}.{ref.namespace or '_'}.{ref.name}".replace("/", "_")
    return state_file(ctx, "backups", f"{ctx.step_id}.{safe}.json")


def record_prior(ctx: StepContext, ref: Ref, live: dict[str, Any] | None) -> dict[str, Any]:
    """What rollback needs about one object, taken before we touch it. Secrets: digest + 0600 backup."""
    entry: dict[str, Any] = {"kind": ref.kind, "name": ref.name, "namespace": ref.namespace,
                             "existed": live is not None}
    if live is None:
        return entry
    prior = strip(live)
    if ref.kind == "Secret":
        path = backup_path(ctx, ref)
        write_atomic(path, json.dumps(prior).encode(), mode=0o600)
        entry.update(digest=secret_digest(secret_data_b64(live), live.get("type")), backup=str(path))
    else:
        entry["prior"] = prior
    return entry


def restore(ctx: StepContext, kube: KubeCluster, entry: dict[str, Any]) -> str:
    """Undo one recorded object: delete it if we created it, else put its prior form back."""
    ref = Ref(entry["kind"], entry["name"], entry.get("namespace"))
    if not entry.get("existed"):
        return f"deleted {ref}" if kube.delete(ref) else f"{ref} already gone"
    if ref.kind == "Secret":
        path = Path(entry["backup"])
        try:
            prior = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PermanentError(f"rollback {ref}: backup {path} unreadable ({exc.__class__.__name__}); not restored") from None
        if secret_digest(secret_data_b64(prior), prior.get("type")) != entry.get("digest"):
            raise PermanentError(f"rollback {ref}: backup {path} does not match its recorded digest; not restored")
    else:
        prior = entry["prior"]
    live = kube.get(ref) if ref.kind == "Secret" else None
    if live is not None and ((live.get("type") or "Opaque") != (prior.get("type") or "Opaque") or live.get("immutable")):
        kube.delete(ref)  # a Secret's type (and an immutable one's data) cannot change in place: recreate it
        wait_gone(ctx, kube, [ref], limit=30.0)
    kube.replace(prior)
    return f"restored {ref}"


def wait_gone(ctx: StepContext, kube: KubeCluster, refs: list[Ref], limit: float = 120.0) -> None:
    """Namespaces terminate asynchronously: wait (bounded) so that a re-run can create them again."""
    deadline = time.monotonic() + min(limit, max(1.0, ctx.remaining()))
    pending = list(refs)
    while pending:
        pending = [r for r in pending if kube.get(r) is not None]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise PermanentError(f"still terminating after {limit:.0f}s: {', '.join(map(str, pending))}")
        ctx.sleep(0.5)


def manifest_variables(runbook: Runbook, overrides: dict[str, Any] | None = None,
                       resolved: dict[str, str] | None = None) -> dict[str, Any]:
    """The variables a manifest step renders with: defaults < storage class < runbook vars < the images
    chosen from the VPS (`resolved`, by images.resolve) < the runbook's images.override < step vars."""
    target = runbook.environment.target
    base = render.variables(runbook.file.vars, target.storage_class if target else None)
    chosen = {**(resolved or {}), **runbook.file.images.override}
    if chosen:
        base["images"] = {**(base.get("images") or {}), **chosen}
    pull = runbook.file.images.pull_secret
    if pull is not None:  # the Secret itself: images.pull-secret (steps/images.py)
        base["image_pull_secrets"] = [{"name": pull.name}]
    return render.deep_merge(base, overrides or {})


def resolved_images(ctx: Any) -> dict[str, str] | None:
    """The images images.resolve chose from the VPS (None: the runbook takes none from it, or a dry run
    before the choice, which renders the runbook's own images; the resolve step's plan lists the real
    ones). A run never falls back to the defaults silently."""
    from migrator.steps.images import (  # a cycle: images imports kube
        ImagesFacts,
        resolver_step,
        takes_from_vps,
    )

    runbook = ctx.runbook
    if not takes_from_vps(runbook):
        return None
    sid = resolver_step(runbook)
    if sid is None:
        raise PermanentError(f"{ctx.step_id}: the runbook's images.from_vps needs a step of type images.resolve "
                             "(phases/2-infrastructure.yaml: resolve-images)")
    if ctx.status_of(sid) == "succeeded":
        return dict(ctx.facts_as(ImagesFacts, sid).images)
    if ctx.dry_run:
        return None
    raise PermanentError(f"{ctx.step_id}: its images come from the VPS through step {sid!r}, which has not "
                         f"succeeded (status: {ctx.status_of(sid)}); run it first")


def _runbook_path(runbook: Runbook, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else runbook.dir / p


@dataclass(frozen=True)
class ChartDocument:
    """Manifest documents with their references unrendered, and where they come from."""

    name: str  # a set name, a file's stem, or a step type's
    origin: str  # as a chart template's comment names it
    docs: list[Any]


@dataclass
class ManifestUse:
    """What one manifest step of a runbook applies (read by `migrate render`)."""

    step_id: str
    vars: dict[str, Any]  # the step's own overrides
    namespaces: list[str] | None
    documents: list[ChartDocument] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)  # what the step's templates() renders


class _RenderOnly:
    """The little of a StepContext that `templates()` reads: the runbook, the step id, paths."""

    dry_run = True  # no facts of a run unless the state holds them

    def __init__(self, runbook: Runbook, step_id: str) -> None:
        self.runbook, self.step_id = runbook, step_id

    def path(self, value: str) -> Path:
        return _runbook_path(self.runbook, value)

    def _state(self) -> Any:
        """The runbook's state (its default state directory), read only: what a run recorded."""
        if not hasattr(self, "_loaded"):
            rb = self.runbook
            sd = (rb.dir / rb.file.state_dir) if rb.file.state_dir else Path.cwd() / "state"
            path = sd.resolve() / f"{rb.name}.state.json"
            self._loaded = StateStore(path).load(rb.name, str(rb.path))
        return self._loaded

    def status_of(self, step_id: str) -> str:
        rec = self._state().steps.get(step_id)
        return rec.status if rec else "pending"

    def facts_as(self, model: Any, step_id: str | None = None) -> Any:
        rec = self._state().steps.get(step_id or self.step_id)
        return model.model_validate(rec.facts if rec else {})


def render_variables(runbook: Runbook) -> dict[str, Any]:
    """The runbook's manifest variables for `migrate render`: with the images a run chose from the VPS
    when the runbook's state records them (else the runbook's own, as a dry run renders)."""
    return manifest_variables(runbook, None, resolved_images(_RenderOnly(runbook, "render")))


def manifest_uses(runbook: Runbook) -> list[ManifestUse]:
    """Every manifest-driven step of the runbook, in run order: its chart documents, and the objects
    its own `templates()` renders (exactly what it applies)."""
    def no_secret(name: str) -> str:
        raise PermanentError(f"manifest steps take no secrets (asked for {name!r})")

    out = []
    for step in runbook.steps:
        cls = step.step_type  # resolved once, by the loader
        if not (isinstance(cls, type) and issubclass(cls, ManifestStep)) or not cls.charted:
            continue
        params: Any = params_model(step, no_secret)
        objects = cls(_RenderOnly(runbook, step.id), params).templates()  # type: ignore[arg-type]
        out.append(ManifestUse(step.id, dict(params.vars), params.namespaces,
                               cls.chart_documents(params, runbook), objects))
    return out


class ManifestParams(StrictModel):
    vars: dict[str, Any] = Field(default_factory=dict)  # overrides of the manifests' variables
    namespaces: list[str] | None = None  # only the objects in these namespaces (cluster-scoped ones stay)
    force_conflicts: bool = False  # take over fields another field manager owns (server-side apply force)


class ManifestStep(Step[Any]):
    """Shared by every manifest-driven step type: subclasses say which manifests (`templates`)."""

    wait_rollout = False
    charted = True  # its objects belong in the Helm charts of `migrate render`
    manifest_sets: tuple[str, ...] = ()  # the sets under migrator/manifests this step type applies

    @classmethod
    def sources(cls, params: Any) -> tuple[list[str], list[str]]:
        """(manifest sets, manifest files relative to the runbook) this step applies."""
        return list(cls.manifest_sets), []

    @classmethod
    def chart_documents(cls, params: Any, runbook: Runbook) -> list[ChartDocument]:
        """The unrendered documents (`${vars.x}` still in them) that `migrate render` makes chart
        templates of: the same ones `templates()` renders."""
        sets, files = cls.sources(params)
        out = []
        for name in sets:
            docs = render.load_file(render.HERE / f"{name}.yaml")
            out.append(ChartDocument(name, f"migrator/manifests/{name}.yaml", [d for d in docs if d is not None]))
        for file in files:
            path = _runbook_path(runbook, file)
            docs = render.load_file(path)
            out.append(ChartDocument(path.stem, path.name, [d for d in docs if d is not None]))
        return out

    def templates(self) -> list[dict[str, Any]]:
        vars_ = self.variables()
        sets, files = self.sources(self.params)
        out: list[dict[str, Any]] = []
        for name in sets:
            out += render.render_set(name, vars_)
        for file in files:
            out += render.render_file(self.ctx.path(file), vars_)
        return out

    def variables(self) -> dict[str, Any]:
        resolved = resolved_images(self.ctx) if self._renders_images() else None
        return manifest_variables(self.ctx.runbook, self.params.vars, resolved)

    def _renders_images(self) -> bool:
        """Whether its manifests name an image (${vars.images.KEY}): only those wait for images.resolve."""
        sets, files = self.sources(self.params)
        paths = [render.HERE / f"{name}.yaml" for name in sets] + [self.ctx.path(f) for f in files]
        return any("vars.images" in p.read_text(encoding="utf-8") for p in paths if p.is_file())

    def objects(self) -> list[dict[str, Any]]:
        if not hasattr(self, "_objects"):
            objs = render.sort_objects(self.templates())
            only = self.params.namespaces
            if only is not None:
                objs = [o for o in objs if not kind_of(o["kind"]).namespaced
                        or (o.get("metadata") or {}).get("namespace") in only
                        or (o["kind"] == "Namespace" and o["metadata"]["name"] in only)]
            for o in objs:
                kind_of(str(o["kind"]))  # unknown kinds fail here, before anything is applied
            self._objects = objs
        return self._objects

    def kube(self) -> KubeCluster:
        return cluster(self.ctx)

    # -- check / plan ----------------------------------------------------------------------------------
    def check(self) -> Check:
        kube = self.kube()
        objs = self.objects()
        for obj in objs:
            ref = Ref.of(obj)
            live = kube.get(ref)
            if live is None:
                return Check(False, f"{ref} does not exist")
            if ref.kind == "Secret":
                if secret_digest(secret_data_b64(obj), obj.get("type")) != secret_digest(live.get("data"), live.get("type")):
                    return Check(False, f"{ref}: data differs")
                continue
            where = difference(strip(obj), live)
            if where:
                return Check(False, f"{ref}: {where} differs")
        return Check(True, f"{len(objs)} objects in place on {kube.describe()}")

    def plan(self) -> Plan:
        """Server-side dry run (dryRun=All) of every object; nothing is changed."""
        kube = self.kube()
        plan = Plan()
        new_namespaces: set[str] = set()
        missing: dict[str, int] = {}
        for obj in self.objects():
            ref = Ref.of(obj)
            live = kube.get(ref)
            if ref.namespace and ref.namespace in new_namespaces:
                plan.changes.append(f"create {ref} (in a namespace this step creates: not dry-run)")
                continue
            try:
                after = kube.apply(obj, dry_run=True, force=self.params.force_conflicts)
            except ApiError as exc:
                if exc.status == 404 and live is None and ref.namespace:
                    missing[ref.namespace] = missing.get(ref.namespace, 0) + 1
                    plan.changes.append(f"create {ref}")
                    continue
                raise PermanentError(f"dry run of {ref} rejected: {exc}") from None
            if live is None:
                plan.changes.append(f"create {ref}")
                if ref.kind == "Namespace":
                    new_namespaces.add(ref.name)
                continue
            if ref.kind == "Secret":
                same = secret_digest(secret_data_b64(after), after.get("type")) == secret_digest(live.get("data"), live.get("type"))
                where = None if same else "data"
            else:
                where = difference(strip(after), live) or difference(strip(obj), live)
            if where:
                plan.changes.append(f"update {ref} ({where} changes)")
        if missing:
            plan.unknowns.append(f"not dry-run: {sum(missing.values())} objects in namespaces that do not exist yet "
                                 f"({', '.join(sorted(missing))}; an earlier step creates them)")
        if self.wait_rollout:
            workloads = [o for o in self.objects() if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]
            if workloads:
                plan.waits.append(f"rollout of {len(workloads)} workloads (the gate waits for every replica ready)")
        return plan

    # -- apply -----------------------------------------------------------------------------------------
    def apply(self) -> None:
        kube = self.kube()
        objs = self.objects()
        recorded = list(self.ctx.facts.get("objects") or [])
        known = {(e["kind"], e.get("namespace"), e["name"]) for e in recorded}
        fresh = []
        for obj in objs:  # first sight of each object only: later attempts would record our own writes
            ref = Ref.of(obj)
            if (ref.kind, ref.namespace, ref.name) not in known:
                fresh.append(record_prior(self.ctx, ref, kube.get(ref)))
        if fresh:
            self.ctx.record(objects=recorded + fresh, server=kube.server)
        for obj in objs:
            kube.apply(obj, force=self.params.force_conflicts)
            self.ctx.failpoint("after-object")
        self.ctx.log.info("applied", objects=len(objs), server=kube.server)

    # -- verify ----------------------------------------------------------------------------------------
    def verify(self) -> None:
        kube = self.kube()
        problems = []
        for obj in self.objects():
            ref = Ref.of(obj)
            if ref.kind == "Namespace":
                live = kube.get(ref)
                phase = ((live or {}).get("status") or {}).get("phase", "Active")
                if live is None or phase != "Active":
                    problems.append(f"namespace {ref.name} is {'missing' if live is None else phase}")
            elif self.wait_rollout and ref.kind in WORKLOADS:
                problem = kube.rollout_problem(obj)
                if problem:
                    problems.append(problem)
        if problems:
            raise GateNotReady(" | ".join(problems[:3]) + (f" | and {len(problems) - 3} more" if len(problems) > 3 else ""))

    # -- rollback --------------------------------------------------------------------------------------
    def rollback(self) -> None:
        entries = list(self.ctx.facts.get("objects") or [])
        if not entries:
            return
        kube = self.kube()
        namespaces = []
        for entry in reversed(entries):
            self.ctx.log.info("rollback", result=restore(self.ctx, kube, entry))
            if entry["kind"] == "Namespace" and not entry.get("existed"):
                namespaces.append(Ref("Namespace", entry["name"]))
        wait_gone(self.ctx, kube, namespaces)
        self.ctx.record(objects=[])  # undone: a later run records afresh

    def rollback_plan(self) -> Plan:
        plan = Plan()
        for e in reversed(self.ctx.facts.get("objects") or []):
            where = f"{e['namespace']}/" if e.get("namespace") else ""
            plan.changes.append(f"{'restore' if e.get('existed') else 'delete'} {e['kind']} {where}{e['name']}")
        return plan


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class NamespacesParams(ManifestParams):
    # The namespaces to create; default: the values of the runbook's vars.namespaces (the names the
    # manifests use; defaults.yaml's when the runbook has none), so a runbook for another platform
    # names its own.
    names: list[str] | None = None
    labels: dict[str, str] = Field(default_factory=dict)  # added to every namespace

    @model_validator(mode="after")
    def _names(self) -> NamespacesParams:
        for name in self.names or []:
            if not _DNS_LABEL.match(name):
                raise ValueError(f"names: {name!r} is not a namespace name (lower-case letters, digits and "
                                 "'-', at most 63, starting and ending alphanumeric)")
        return self


def namespace_objects(names: list[str], labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One Namespace per name, labelled name=<namespace> (what NetworkPolicies select on)."""
    return [{"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": name, "labels": {"name": name, **(labels or {}),
                                                   "app.kubernetes.io/managed-by": "migrator"}}}
            for name in dict.fromkeys(names)]


def runbook_namespaces(variables: dict[str, Any]) -> list[str]:
    """The values of vars.namespaces (a map role -> name, or a list of names)."""
    value = variables.get("namespaces")
    names = list(value.values()) if isinstance(value, dict) else list(value or [])
    return [str(n) for n in names]


@step_type("kube.namespaces")
class KubeNamespaces(ManifestStep):
    """The runbook's namespaces (with.names, else vars.namespaces), labelled name=<namespace>."""

    Params = NamespacesParams
    description = "create the environment's namespaces"

    def templates(self) -> list[dict[str, Any]]:
        names = self.params.names
        if names is None:
            # The runbook's (or the step's) own vars.namespaces replaces the defaults' whole: merged
            # with them, another platform's runbook would create Sevensa's namespaces as well.
            own = self.params.vars.get("namespaces", (self.ctx.runbook.file.vars or {}).get("namespaces"))
            names = runbook_namespaces({"namespaces": own} if own is not None else self.variables())
        if not names:
            raise PermanentError(f"{self.ctx.step_id}: no namespaces to create: give with.names, or "
                                 "vars.namespaces in the runbook")
        bad = [n for n in names if not _DNS_LABEL.match(n)]
        if bad:
            raise PermanentError(f"{self.ctx.step_id}: vars.namespaces: {bad[0]!r} is not a namespace name")
        return namespace_objects(names, self.params.labels)

    @classmethod
    def chart_documents(cls, params: Any, runbook: Runbook) -> list[ChartDocument]:
        """The same objects over `${vars.namespaces.KEY}`, so that a chart's values name them."""
        if params.names is not None:
            raise PermanentError("with.names: explicit namespace names cannot be chart values; name them in "
                                 "the runbook's vars.namespaces instead")
        own = params.vars.get("namespaces", (runbook.file.vars or {}).get("namespaces"))
        value = own if own is not None else render.defaults().get("namespaces")
        if not isinstance(value, dict):
            raise PermanentError("vars.namespaces: a chart needs it as a map (role: name), not a list")
        refs = [f"${{vars.namespaces.{key}}}" for key in value]
        return [ChartDocument("namespaces", "kube.namespaces (migrator/steps/kube.py)",
                              namespace_objects(refs, params.labels))]


class PoliciesParams(ManifestParams):
    pass


@step_type("kube.network-policies")
class KubeNetworkPolicies(ManifestStep):
    """Default deny in every namespace, then the architecture's allowances."""

    Params = PoliciesParams
    description = "apply the NetworkPolicies"

    manifest_sets = ("network-policies",)


class RbacParams(ManifestParams):
    pass


@step_type("kube.rbac")
class KubeRbac(ManifestStep):
    """A ServiceAccount per component (token automount off where not needed), and the roles some need."""

    Params = RbacParams
    description = "apply ServiceAccounts, Roles and bindings"

    manifest_sets = ("rbac",)


class ApplyParams(ManifestParams):
    sets: list[str] = Field(default_factory=list)  # names under migrator/manifests (rentguy, infra...)
    files: list[str] = Field(default_factory=list)  # more manifest files, relative to the runbook
    wait: bool = True  # the gate waits for every Deployment/StatefulSet/DaemonSet to roll out

    @model_validator(mode="after")
    def _something(self) -> ApplyParams:
        if not self.sets and not self.files:
            raise ValueError("give at least one of sets, files")
        return self


@step_type("kube.apply")
class KubeApply(ManifestStep):
    """Apply manifest sets and files in dependency order; the gate is the rollout of every workload."""

    Params = ApplyParams
    description = "apply manifests and wait for their rollout"

    @property
    def wait_rollout(self) -> bool:  # type: ignore[override]
        return bool(self.params.wait)

    @classmethod
    def sources(cls, params: Any) -> tuple[list[str], list[str]]:
        return list(params.sets), list(params.files)


class StorageCheckParams(StrictModel):
    storage_class: str | None = None  # default: environment.target.storage_class


@step_type("kube.storage-check")
class KubeStorageCheck(Step[StorageCheckParams]):
    """The StorageClass the volumeClaimTemplates name exists. Changes nothing."""

    description = "check that the StorageClass exists"

    def _name(self) -> str:
        target = self.ctx.runbook.environment.target
        name = self.params.storage_class or (target.storage_class if target else None)
        if not name:
            raise PermanentError("kube.storage-check: no storage_class param and no environment.target.storage_class")
        return name

    def _problem(self) -> str | None:
        kube = cluster(self.ctx)
        name = self._name()
        if kube.get(Ref("StorageClass", name)) is not None:
            return None
        have = [sc["metadata"]["name"] for sc in kube.list_objects("StorageClass")]
        return (f"StorageClass {name!r} does not exist on {kube.describe()} (available: {', '.join(have) or 'none'}); "
                "set environment.target.storage_class in the runbook or create the class")

    def check(self) -> Check:
        problem = self._problem()
        return Check(problem is None, problem or f"StorageClass {self._name()} exists")

    def plan(self) -> Plan:
        problem = self._problem()
        return Plan(unknowns=[f"the run will stop here: {problem}"] if problem else [])

    def apply(self) -> None:
        problem = self._problem()
        if problem:
            raise PermanentError(problem)

    def verify(self) -> None:
        problem = self._problem()
        if problem:
            raise PermanentError(problem)

    def rollback(self) -> None:
        pass
