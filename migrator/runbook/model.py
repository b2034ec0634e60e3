"""The runbook and phase models: validated up front, before anything touches the world."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from migrator.runbook.base import StrictModel
from migrator.runbook.environment import Environment

STEP_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class HttpCheck(StrictModel):
    url: str
    host_header: str | None = None
    expect_status: list[int] = Field(default_factory=lambda: [200])
    expect_body: str | None = None  # a substring
    timeout_s: float = 5
    tls_verify: bool = True


class TcpCheck(StrictModel):
    host: str
    port: int = Field(ge=1, le=65535)
    timeout_s: float = 3


class GateCheck(StrictModel):
    """An extra health check in a gate, beside the step's own `verify`."""

    http: HttpCheck | None = None
    tcp: TcpCheck | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> GateCheck:
        if (self.http is None) == (self.tcp is None):
            raise ValueError("give exactly one of http, tcp")
        return self


class Gate(StrictModel):
    timeout: float = Field(default=60, gt=0, description="seconds until the gate fails")
    interval: float = Field(default=1, gt=0)
    successes: int = Field(default=1, ge=1, description="consecutive successes needed")
    checks: list[GateCheck] = Field(default_factory=list)


class StepSpec(StrictModel):
    id: str
    uses: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    needs: list[str] = Field(default_factory=list)
    gate: Gate = Field(default_factory=Gate)
    retries: int = Field(default=3, ge=0, le=100)
    timeout: float = Field(default=900, gt=0, description="seconds for apply, retries included")
    rollback: bool = True
    point_of_no_return: bool = False
    description: str = ""

    @field_validator("id")
    @classmethod
    def _kebab(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError(f"expected a kebab-case id like 'dns-cutover', got {value!r}")
        return value


class PhaseFile(StrictModel):
    phase: int = Field(ge=1, le=99)
    name: str
    description: str = ""
    steps: list[StepSpec]


class EnvSecret(StrictModel):
    env: str


class FileSecret(StrictModel):
    file: str
    key: str | None = None  # read KEY=value from an env-format file instead of the whole file


class OpenBaoRef(StrictModel):
    path: str  # KV v2 path under the mount, e.g. rentguy/db
    key: str
    mount: str = "secret"


class OpenBaoSecret(StrictModel):
    openbao: OpenBaoRef


SecretRef = EnvSecret | FileSecret | OpenBaoSecret


class GitopsConfig(StrictModel):
    """Where the charts of `migrate render` live in Git, for the ArgoCD Applications (gitops.handoff)."""

    repo_url: str = Field(pattern=r"^(https://|ssh://|git@)\S+$")
    revision: str = Field(default="HEAD", min_length=1)  # a branch, tag or commit; pin a tag in production
    path: str = ""  # the directory of `migrate render --out` inside the repository ("" = its root)
    argocd_namespace: str = Field(default="argocd", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    project: str = "default"
    destination_server: str = "https://kubernetes.default.svc"


class CoverageEntry(StrictModel):
    """One stateful thing of the VPS: a named volume, a read-write bind mount (`service:/path`) or a database
    (`service/database`; a Redis database is `service/db0`), with the step that moves it or the reason it stays."""

    volume: str | None = None
    bind: str | None = None
    database: str | None = None
    step: str | None = None  # coverage.map: the step id that moves it
    reason: str | None = None  # coverage.exclude: why it stays behind

    @model_validator(mode="after")
    def _one_thing(self) -> CoverageEntry:
        if len([k for k in ("volume", "bind", "database") if getattr(self, k)]) != 1:
            raise ValueError("give exactly one of volume, bind, database")
        return self

    def kind(self) -> str:
        return next(k for k in ("volume", "bind", "database") if getattr(self, k))

    def name(self) -> str:
        return str(getattr(self, self.kind()))


class MappedEntry(CoverageEntry):
    step: str


class ExcludedEntry(CoverageEntry):
    reason: str = Field(min_length=3)


class CoverageConfig(StrictModel):
    map: list[MappedEntry] = Field(default_factory=list)
    exclude: list[ExcludedEntry] = Field(default_factory=list)


class ImageConsent(StrictModel):
    """The operator's explicit yes to one image change against the VPS (a major version, a downgrade,
    or a tag that cannot be compared), e.g. {key: rentguy-db, from: "14", to: "15", reason: ...}."""

    key: str
    from_: str = Field(alias="from")  # the VPS's tag, or a version prefix of it ("14" names 14.11-alpine)
    to: str  # the target's tag, or a version prefix of it
    reason: str = Field(min_length=3)


class PullSecretConfig(StrictModel):
    """imagePullSecrets: a secret reference (a name under `secrets:`) holding a Docker config JSON
    ({"auths": {...}}), created as a kubernetes.io/dockerconfigjson Secret `name` in each namespace."""

    secret: str
    name: str = Field(default="registry-credentials", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespaces: list[str] | None = None  # default: every namespace of vars.namespaces (each runs workloads)


class ImagesConfig(StrictModel):
    """Where each workload's image comes from (the keys are those of vars.images, see
    migrator/manifests/defaults.yaml): what the VPS runs, unless overridden here."""

    # image key -> the compose service (environment.source.compose_project) whose image it takes
    from_vps: dict[str, str] = Field(default_factory=dict)
    override: dict[str, str] = Field(default_factory=dict)  # image key -> image, used as given
    consent: list[ImageConsent] = Field(default_factory=list)
    pin: Literal["digest", "tag"] = "digest"  # digest: repo:tag@sha256:... where the VPS knows the registry digest
    pull_secret: PullSecretConfig | None = None

    @model_validator(mode="after")
    def _consents(self) -> ImagesConfig:
        for i, c in enumerate(self.consent):
            if c.key not in self.from_vps:
                raise ValueError(f"consent.{i}.key: {c.key!r} is not in images.from_vps (a change is only "
                                 "measured against what the VPS runs)")
        for key, image in self.override.items():
            if not image.strip() or any(ch.isspace() for ch in image):
                raise ValueError(f"override.{key}: {image!r} is not an image reference")
        return self


class RunbookFile(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    production: bool = False
    phases: list[str]
    state_dir: str | None = None  # relative to the runbook; default: ./state of the working directory
    # Steps run at once by default (`migrate run --parallel N` overrides it); 1: one after the other.
    parallel: int = Field(default=1, ge=1, le=32, strict=True)
    vars: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    environment: Environment = Field(default_factory=Environment)
    settings: dict[str, Any] = Field(default_factory=dict)
    gitops: GitopsConfig | None = None
    coverage: CoverageConfig = Field(default_factory=CoverageConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)


# Step type name ("dns.cutover") -> its class (migrator.steps.base.Step), built by migrator.steps.catalogue
# and given to the loader: the runbook layer never imports the steps.
Catalogue = Mapping[str, Any]


@dataclass
class Step:
    """One step of the loaded runbook: its spec with `with` interpolated (secrets still as references),
    and its step type's class, resolved once by the loader."""

    spec: StepSpec
    phase: int
    phase_name: str
    source: str  # FILE:LINE of its `id`
    params_raw: dict[str, Any]
    digest: str
    # The step type's class (a migrator.steps.base.Step subclass), looked up once by the loader.
    step_type: Any = None
    # Its validated Params model, when `with:` holds no ${secrets.*}; with secrets it is None and the
    # engine validates once more at run time, with the values it resolves then (never stored).
    params: Any = None

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass
class Runbook:
    path: Path
    file: RunbookFile
    steps: list[Step]
    digest: str
    phase_names: dict[int, str] = field(default_factory=dict)
    coverage_where: dict[str, str] = field(default_factory=dict)  # "map.0" -> FILE:LINE of that entry

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def dir(self) -> Path:
        return self.path.parent

    @property
    def environment(self) -> Environment:
        return self.file.environment

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def step_ids(self) -> list[str]:
        return [s.id for s in self.steps]

    def phases(self) -> list[int]:
        return sorted({s.phase for s in self.steps})


Status = Literal["pending", "running", "succeeded", "failed", "interrupted", "rolled_back", "skipped"]
STATUSES: tuple[str, ...] = ("pending", "running", "succeeded", "failed", "interrupted", "rolled_back", "skipped")
