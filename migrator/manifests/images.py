"""Which image each workload runs: the VPS's (as `inspect` sees it), the runbook's override, or the
manifests' default; and what changes against the VPS, named so that an operator can consent to it.

Pure functions over plain data (the inventory's containers, the runbook's `images:` section): the step
`images.resolve` (steps/images.py) and `migrate plan` both call them, so the plan shows exactly what a
run would choose.

Versions are read from tags the way image publishers write them: `15-alpine` -> 15, `24.0` -> 24.0,
`v3.0` -> 3.0, `1.45.1` -> 1.45.1, `0.39.0-alpine` -> 0.39.0. A tag without a leading number (`latest`,
`mainline`, no tag at all) cannot be compared and is named so, never taken as equal. The major version
is the first number, or the second when the first is 0 (0.39 -> 0.40 breaks as a major would).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_VERSION = re.compile(r"^[vV]?(\d+(?:\.\d+)*)(?:[-_+.]?(.*))?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageRef:
    """`[registry/]repository[:tag][@sha256:...]` taken apart."""

    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        name, _, digest = text.strip().partition("@")
        tag = None
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:  # a colon after the last slash is a tag (before it: a registry's port)
            name, tag = name[:colon], name[colon + 1:]
        return cls(name, tag or None, digest or None)

    @property
    def canonical_repository(self) -> str:
        """docker.io/library/postgres and postgres are the same repository."""
        repo = self.repository
        for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
            if repo.startswith(prefix):
                repo = repo[len(prefix):]
        return repo.removeprefix("library/")

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True)
class Version:
    numbers: tuple[int, ...]
    variant: str  # what follows the numbers: "alpine", "apache", ""

    @property
    def major(self) -> tuple[int, ...]:
        return self.numbers[:2] if self.numbers[0] == 0 and len(self.numbers) > 1 else self.numbers[:1]


def version(tag: str | None) -> Version | None:
    """The version a tag names, or None when it names none (`latest`, no tag)."""
    m = _VERSION.match(tag or "")
    if not m:
        return None
    return Version(tuple(int(n) for n in m.group(1).split(".")), m.group(2) or "")


def compare(old_tag: str | None, new_tag: str | None) -> str:
    """How the version moves from the VPS's tag to the target's: "same", "upgrade", "major upgrade",
    "downgrade", "major downgrade", or "cannot compare" (a tag without a version).

    Only the numbers both tags give are compared: `15` (any 15.x) against `15.6` is the same."""
    a, b = version(old_tag), version(new_tag)
    if a is None or b is None:
        return "same" if old_tag == new_tag and old_tag is not None else "cannot compare"
    n = min(len(a.numbers), len(b.numbers))
    x, y = a.numbers[:n], b.numbers[:n]
    if x == y:
        return "same"
    major = a.major[:n] != b.major[:n]
    if y > x:
        return "major upgrade" if major else "upgrade"
    return "major downgrade" if major else "downgrade"


# Changes that a run refuses without the runbook's consent (images.consent).
NEEDS_CONSENT = ("major upgrade", "downgrade", "major downgrade", "cannot compare")


def version_matches(spec: str, tag: str | None) -> bool:
    """Does a consent's `from`/`to` name this tag? The tag itself, or a version prefix of it
    (`"14"` names `14.11-alpine`; `"24.0"` names `24.0.5`)."""
    if tag is None:
        return spec in ("", "none")
    if spec == tag:
        return True
    s, t = version(spec), version(tag)
    return bool(s and t and not s.variant and t.numbers[:len(s.numbers)] == s.numbers)


@dataclass(frozen=True)
class VpsImage:
    """What one compose service runs on the VPS."""

    service: str
    image: str  # as the container was created with (Config.Image)
    image_id: str  # the local image id (sha256 of its config)
    repo_digests: tuple[str, ...]  # registry digests of that image (repo@sha256:...), empty when built locally

    def registry_digest(self) -> str | None:
        """The digest a registry serves this image under, for the image's own repository."""
        want = ImageRef.parse(self.image).canonical_repository
        for rd in self.repo_digests:
            ref = ImageRef.parse(rd)
            if ref.digest and _DIGEST.match(ref.digest) and ref.canonical_repository == want:
                return ref.digest
        return None


def vps_images(inventory: Mapping[str, Any]) -> dict[str, VpsImage | str]:
    """service -> what it runs, from an inventory (adapters/inventory.collect); a str when the service's
    containers run different images (a service half-way through an update), which is no basis to choose."""
    out: dict[str, VpsImage | str] = {}
    for proj in (inventory.get("projects") or {}).values():
        for svc, body in (proj.get("services") or {}).items():
            seen = {(c.get("image", ""), c.get("image_id", "")): c for c in body.get("containers") or []}
            if len(seen) > 1:
                out[svc] = (f"its containers run different images ({', '.join(sorted(i for i, _ in seen))}); "
                            "finish or undo that update on the VPS first")
                continue
            for (image, image_id), c in seen.items():
                out[svc] = VpsImage(svc, image, image_id, tuple(c.get("repo_digests") or ()))
    return out


@dataclass
class Choice:
    """The image one key (vars.images.KEY) resolves to, where it comes from, and how it moves."""

    key: str
    image: str  # what the manifests get
    source: str  # "vps", "override", "runbook vars", "default"
    vps_service: str | None = None
    vps_image: str | None = None  # what the VPS runs (tag as created)
    pinned: str = ""  # "digest" or why the image is left at its tag
    change: str = ""  # compare(), when the key is on the VPS and the image differs
    consent: str | None = None  # the consent's reason, when one covers the change
    problem: str | None = None  # why the key cannot be resolved at all

    @property
    def needs_consent(self) -> bool:
        return self.change in NEEDS_CONSENT and self.consent is None

    def line(self) -> str:
        """One line for the plan and the journal."""
        text = f"{self.key}: {self.image} ({self.source}"
        if self.source == "vps":
            text += f" service {self.vps_service}, {self.pinned}"
        text += ")"
        if self.problem:
            return f"{self.key}: {self.problem}"
        if self.vps_image and self.source != "vps":
            text += f"; the VPS runs {self.vps_image}"
        if self.change and self.change != "same":
            text += f"; {self.change.upper() if self.change in NEEDS_CONSENT else self.change}"
            if self.change in NEEDS_CONSENT:
                text += f", consented: {self.consent}" if self.consent else ", NO CONSENT"
        return text


@dataclass
class Resolution:
    choices: list[Choice] = field(default_factory=list)

    def images(self) -> dict[str, str]:
        return {c.key: c.image for c in self.choices if not c.problem}

    def refusals(self) -> list[str]:
        """One line per key a run must not deploy: unresolvable, or a change without consent."""
        out = [f"images.from_vps.{c.key}: {c.problem}" for c in self.choices if c.problem]
        for c in self.choices:
            if c.needs_consent and not c.problem:
                old, new = ImageRef.parse(c.vps_image or "").tag or "latest", ImageRef.parse(c.image).tag or "none"
                what = ("a tag without a version cannot be compared" if c.change == "cannot compare"
                        else f"{c.change} {old} -> {new}")
                out.append(f"image {c.key}: {what} ({c.vps_image} on the VPS, {c.image} here) needs consent: add "
                           f"{{key: {c.key}, from: \"{old}\", to: \"{new}\", reason: ...}} to the runbook's images.consent")
        return out


def _pin(vps: VpsImage, pin: str) -> tuple[str, str]:
    """The reference the cluster pulls, and how it is pinned."""
    ref = ImageRef.parse(vps.image)
    if ref.digest:
        return vps.image, "digest (as the VPS names it)"
    tag = ref.tag or "latest"
    digest = vps.registry_digest()
    if pin == "tag":
        return f"{ref.repository}:{tag}", "tag (images.pin: tag)"
    if digest is None:
        return f"{ref.repository}:{tag}", "tag only: the VPS has no registry digest of it (built or loaded locally)"
    return f"{ref.repository}:{tag}@{digest}", "digest"


def resolve(config: Any, static: Mapping[str, Any], vps: Mapping[str, VpsImage | str] | None,
            runbook_vars: Mapping[str, Any] | None = None) -> Resolution:
    """Each key of the manifests' images: override > the VPS's > runbook vars > defaults.

    `config` is the runbook's `images:` section (or None), `static` the images the runbook renders with
    without the VPS (defaults < vars), `vps` the VPS's services (None: not read, e.g. no inventory)."""
    from_vps: Mapping[str, str] = getattr(config, "from_vps", None) or {}
    override: Mapping[str, str] = getattr(config, "override", None) or {}
    pin: str = getattr(config, "pin", "digest")
    consents = list(getattr(config, "consent", None) or [])
    own = (runbook_vars or {}).get("images") or {}
    out = Resolution()
    for key in sorted(set(static) | set(from_vps) | set(override)):
        default_source = "runbook vars" if key in own else "default"
        choice = Choice(key, str(static.get(key, "")), default_source)
        service = from_vps.get(key)
        found: VpsImage | str | None = None
        if service is not None:
            choice.vps_service = service
            if vps is None:
                choice.problem = f"service {service}: no inventory of the VPS to take its image from"
            else:
                found = vps.get(service)
                if found is None:
                    choice.problem = (f"no compose service {service!r} on the VPS (it runs: "
                                      f"{', '.join(sorted(vps)) or 'none'})")
                elif isinstance(found, str):
                    choice.problem = f"service {service}: {found}"
        if isinstance(found, VpsImage):
            choice.vps_image = found.image
            choice.image, choice.pinned = _pin(found, pin)
            choice.source = "vps"
        if key in override:
            choice.image, choice.source, choice.problem = override[key], "override", None
        if isinstance(found, VpsImage) and choice.source != "vps":
            old, new = ImageRef.parse(found.image), ImageRef.parse(choice.image)
            choice.change = compare(old.tag or "latest", new.tag)
            if choice.change == "cannot compare" and (new.digest and new.digest == found.registry_digest()):
                choice.change = "same"  # the very image the VPS runs, named by digest
            for c in consents:
                if c.key == key and version_matches(c.from_, old.tag or "latest") and version_matches(c.to, new.tag):
                    choice.consent = c.reason
        out.choices.append(choice)
    return out
