"""images.resolve: the image of each workload, from what runs on the VPS (the runbook's `images:`).

It reads the inventory that `compose.inspect` recorded (its typed facts: repository, tag, image id and
registry digests of every container), chooses each key of the manifests' `vars.images` (override > the
VPS's > runbook vars > defaults, see manifests/images.py) and records the choice; the manifest steps
(steps/kube.py) render with it. Its gate refuses a major version change, a downgrade, or a change that
cannot be compared (`latest`) against what the VPS runs, unless the runbook's `images.consent` names it.
`plan` reads the VPS's images itself (read-only, no database asked), so `migrate plan` shows each image
and refuses what the run would refuse.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from migrator.adapters.docker import remote_for
from migrator.adapters.inventory import images as vps_images
from migrator.errors import PermanentError, RefusedError
from migrator.manifests import images
from migrator.manifests import render as manifests
from migrator.steps.base import Check, Facts, Plan, Step, StrictModel, step_type
from migrator.steps.compose import InspectFacts
from migrator.steps.kube import ManifestParams, ManifestStep, runbook_namespaces

STEP_TYPE = "images.resolve"


class ResolveParams(StrictModel):
    inventory_step: str = "inspect-source"  # the compose.inspect step whose inventory is read


class ImagesFacts(Facts):
    """key -> the image the manifests get; `choices`: one dict per key (source, VPS image, pinning...)."""

    images: dict[str, str] = {}
    choices: list[dict[str, Any]] = []
    refusals: list[str] = []


def static_images(runbook: Any, step_vars: dict[str, Any] | None = None) -> dict[str, Any]:
    """The images the manifests render with when nothing comes from the VPS (defaults < vars)."""
    target = runbook.environment.target
    vars_ = manifests.variables(runbook.file.vars, target.storage_class if target else None, step_vars)
    value = vars_.get("images") or {}
    return dict(value) if isinstance(value, dict) else {}


def resolve(runbook: Any, inventory: dict[str, Any] | None) -> images.Resolution:
    return images.resolve(runbook.file.images, static_images(runbook),
                          images.vps_images(inventory) if inventory is not None else None, runbook.file.vars)


def resolver_step(runbook: Any) -> str | None:
    """The id of the runbook's images.resolve step (None: the runbook has none)."""
    for step in runbook.steps:
        if step.spec.uses == STEP_TYPE:
            return str(step.id)
    return None


def takes_from_vps(runbook: Any) -> bool:
    return bool(runbook.file.images.from_vps)


@step_type(STEP_TYPE)
class ImagesResolve(Step[ResolveParams]):
    """Choose every workload's image (VPS, override, default); the gate refuses unconsented changes."""

    description = "choose each workload's image from what the VPS runs"

    @classmethod
    def check_params(cls, params: Any, runbook: Any) -> list[tuple[str, str]]:
        known = set(manifests.defaults().get("images") or {}) | set(runbook.vars.get("images") or {})
        cfg = runbook.images
        out = []
        for section in ("from_vps", "override"):
            for key in getattr(cfg, section):
                if key not in known:
                    out.append(("inventory_step", f"the runbook's images.{section}.{key}: no such image key "
                                f"(the manifests use: {', '.join(sorted(known))})"))
        if cfg.pull_secret is not None and cfg.pull_secret.secret not in runbook.secrets:
            out.append(("inventory_step", f"the runbook's images.pull_secret.secret: {cfg.pull_secret.secret!r} "
                        "is not defined in its secrets:"))
        return out

    def _lines(self, res: images.Resolution) -> list[str]:
        return [c.line() for c in res.choices]

    def check(self) -> Check:
        return Check(False, "the images are chosen every time (the VPS may have moved)")

    def plan(self) -> Plan:
        inventory = None
        if takes_from_vps(self.ctx.runbook):
            source = self.ctx.runbook.environment.source
            if source is None:
                raise PermanentError(f"{self.ctx.step_id}: images.from_vps needs environment.source (the VPS)")
            inventory = vps_images(remote_for(self.ctx), source.compose_project)
        res = resolve(self.ctx.runbook, inventory)
        refusals = res.refusals()
        if refusals:
            raise RefusedError(f"{len(refusals)} image(s) refused: " + " | ".join(refusals))
        return Plan(changes=[f"image {line}" for line in self._lines(res)])

    def apply(self) -> None:
        inventory = None
        if takes_from_vps(self.ctx.runbook):
            sid = self.params.inventory_step
            if self.ctx.status_of(sid) != "succeeded":
                raise PermanentError(f"{self.ctx.step_id}: images.from_vps reads the inventory step {sid!r}, which "
                                     f"has not succeeded (status: {self.ctx.status_of(sid)}); set with.inventory_step")
            inventory = self.ctx.facts_as(InspectFacts, sid).inventory
        res = resolve(self.ctx.runbook, inventory)
        refusals = res.refusals()
        self.ctx.record(images=res.images() if not refusals else {},
                        choices=[{"key": c.key, "image": c.image, "source": c.source, "vps_service": c.vps_service,
                                  "vps_image": c.vps_image, "pinned": c.pinned, "change": c.change,
                                  "consent": c.consent} for c in res.choices],
                        refusals=refusals)
        for line in self._lines(res):
            self.ctx.log.info("image", choice=line)
        self.ctx.journal("images-resolved", images=res.images(), refused=len(refusals))

    def verify(self) -> None:
        facts = self.ctx.facts_as(ImagesFacts)
        if facts.refusals:
            more = f" (and {len(facts.refusals) - 1} more)" if len(facts.refusals) > 1 else ""
            raise PermanentError(facts.refusals[0] + more)

    def rollback(self) -> None:
        pass  # it changed nothing outside the state

    def rollback_plan(self) -> Plan:
        return Plan(changes=["nothing: it only chose images"])

    def report(self) -> dict[str, Any]:
        facts = self.ctx.facts_as(ImagesFacts)
        return {"images": len(facts.images),
                "from_vps": sum(1 for c in facts.choices if c.get("source") == "vps"),
                "pinned_by_digest": sum(1 for c in facts.choices if c.get("pinned") == "digest")}


# -- images.pull-secret -----------------------------------------------------------------------------

class PullSecretParams(ManifestParams):
    pass  # what and where: the runbook's images.pull_secret (environment-specific, like its secrets)


def _dockerconfig(ctx: Any, name: str) -> str:
    """The secret's value, checked to be a Docker config (never quoted in an error)."""
    value = ctx.secret(name)
    try:
        doc = json.loads(value)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("auths"), dict) or not doc["auths"]:
        raise PermanentError(f"{ctx.step_id}: secret {name!r} (images.pull_secret.secret) is not a Docker config "
                             'JSON with registries under "auths" (the content of ~/.docker/config.json)')
    return value


@step_type("images.pull-secret")
class ImagesPullSecret(ManifestStep):
    """The runbook's images.pull_secret as a kubernetes.io/dockerconfigjson Secret in each namespace that
    runs workloads; the pods name it in imagePullSecrets (vars.image_pull_secrets). Without
    images.pull_secret it has nothing to do. Recorded like every Secret: digests and a 0600 backup only."""

    Params = PullSecretParams
    charted = False  # a Secret's value never goes into the charts (kube.secret's rule)
    description = "the registry credentials (imagePullSecrets) in each namespace"

    def templates(self) -> list[dict[str, Any]]:

        cfg = self.ctx.runbook.file.images.pull_secret
        if cfg is None:
            return []
        names = cfg.namespaces if cfg.namespaces is not None else runbook_namespaces(self.variables())
        data = {".dockerconfigjson": base64.b64encode(_dockerconfig(self.ctx, cfg.secret).encode()).decode()}
        return [{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                 "metadata": {"name": cfg.name, "namespace": ns,
                              "labels": {"app.kubernetes.io/managed-by": "migrator"}},
                 "data": dict(data)} for ns in dict.fromkeys(names)]
