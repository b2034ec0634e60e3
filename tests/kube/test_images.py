"""Choosing images (migrator/manifests/images.py): tags read as versions, changes against the VPS named,
consent required where it must be; the runbook's images: section checked at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migrator.manifests import images
from migrator.runbook.model import ImagesConfig
from tests.util import write_runbook

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("old", "new", "want"), [
    ("14-alpine", "15-alpine", "major upgrade"),
    ("15-alpine", "14-alpine", "major downgrade"),
    ("24.0", "24.0.5", "same"),        # 24.0 names any 24.0.x
    ("24.1", "24.0", "downgrade"),     # an older Keycloak than the VPS's
    ("v3.0", "v3.1", "upgrade"),
    ("1.45.1", "1.44.0", "downgrade"),
    ("0.39.0-alpine", "0.40.0-alpine", "major upgrade"),  # 0.x: the minor is the major
    ("latest", "latest", "same"),
    ("latest", "15-alpine", "cannot compare"),
    ("15", None, "cannot compare"),
])
def test_compare_reads_tags_as_versions(old: str, new: str | None, want: str) -> None:
    assert images.compare(old, new) == want


def test_image_refs_and_registry_digest() -> None:
    ref = images.ImageRef.parse("registry.example:5000/team/api:2.4.1@" + DIGEST)
    assert (ref.repository, ref.tag, ref.digest) == ("registry.example:5000/team/api", "2.4.1", DIGEST)
    assert images.ImageRef.parse("registry.example:5000/team/api").tag is None
    vps = images.VpsImage("db", "postgres:14-alpine", "sha256:local", (f"docker.io/library/postgres@{DIGEST}",))
    assert vps.registry_digest() == DIGEST
    assert images.VpsImage("db", "postgres:14", "sha256:x", (f"other/repo@{DIGEST}",)).registry_digest() is None


def _inv(**services: tuple[str, list[str]]) -> dict:
    return {"projects": {"p": {"services": {
        svc: {"containers": [{"image": img, "image_id": f"sha256:{svc}", "repo_digests": rd}]}
        for svc, (img, rd) in services.items()}}}}


def test_resolve_pins_digests_names_sources_and_refuses_without_consent() -> None:
    cfg = ImagesConfig.model_validate({
        "from_vps": {"db": "db", "api": "api", "kc": "keycloak"},
        "override": {"kc": "quay.io/keycloak/keycloak:24.0"}})
    inv = _inv(db=("postgres:14-alpine", [f"postgres@{DIGEST}"]), api=("sevensa/api:latest", []),
               keycloak=("quay.io/keycloak/keycloak:25.0.1", []))
    static = {"db": "postgres:15-alpine", "api": "sevensa/api:latest", "kc": "x:1", "web": "nginx:1.27"}
    res = images.resolve(cfg, static, images.vps_images(inv), {"images": {"web": "nginx:1.27"}})
    got = {c.key: c for c in res.choices}
    assert got["db"].image == f"postgres:14-alpine@{DIGEST}" and got["db"].pinned == "digest"
    assert got["api"].image == "sevensa/api:latest" and got["api"].pinned.startswith("tag only")
    assert got["kc"].source == "override" and got["kc"].change == "major downgrade"
    assert got["web"].source == "runbook vars" and got["web"].vps_image is None
    refusals = res.refusals()
    assert len(refusals) == 1
    assert "image kc: major downgrade 25.0.1 -> 24.0" in refusals[0]
    assert '{key: kc, from: "25.0.1", to: "24.0", reason: ...}' in refusals[0] and "images.consent" in refusals[0]
    assert "NO CONSENT" in got["kc"].line()

    consented = ImagesConfig.model_validate({
        "from_vps": {"kc": "keycloak"}, "override": {"kc": "quay.io/keycloak/keycloak:24.0"},
        "consent": [{"key": "kc", "from": "25", "to": "24.0", "reason": "rehearsed on a copy, DB schema ok"}]})
    res = images.resolve(consented, static, images.vps_images(inv))
    assert res.refusals() == []
    assert "consented: rehearsed" in next(c for c in res.choices if c.key == "kc").line()


def test_latest_override_against_a_version_is_not_silently_equal() -> None:
    cfg = ImagesConfig.model_validate({"from_vps": {"db": "db"}, "override": {"db": "postgres:latest"}})
    res = images.resolve(cfg, {}, images.vps_images(_inv(db=("postgres:15", []))))
    assert res.choices[0].change == "cannot compare"
    assert "a tag without a version cannot be compared" in res.refusals()[0]


def test_unknown_service_and_mixed_containers_are_refused() -> None:
    inv = _inv(db=("postgres:15", []))
    inv["projects"]["p"]["services"]["api"] = {"containers": [
        {"image": "api:1", "image_id": "sha256:1"}, {"image": "api:2", "image_id": "sha256:2"}]}
    cfg = ImagesConfig.model_validate({"from_vps": {"x": "nope", "api": "api"}})
    refusals = images.resolve(cfg, {}, images.vps_images(inv)).refusals()
    assert any("images.from_vps.x: no compose service 'nope' on the VPS (it runs: api, db)" in r for r in refusals)
    assert any("its containers run different images (api:1, api:2)" in r for r in refusals)


def test_runbook_images_section_is_checked_at_load(tmp_path: Path) -> None:
    from tests.util import migrate

    steps = {1: [{"id": "resolve-images", "uses": "images.resolve"}]}
    rb = write_runbook(tmp_path, steps, images={"from_vps": {"no-such-key": "db"}})
    proc = migrate("status", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2, proc.stderr
    assert "images.from_vps.no-such-key: no such image key" in proc.stderr
    assert "Traceback" not in proc.stderr
    rb = write_runbook(tmp_path, steps, images={"from_vps": {"rentguy-db": "db"},
                                                "consent": [{"key": "keycloak", "from": "1", "to": "2", "reason": "x y z"}]})
    proc = migrate("status", "--runbook", str(rb), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2 and "'keycloak' is not in images.from_vps" in proc.stderr, proc.stderr


CANARY = "canary-regcred-7Kq2Zp"


def _with_images(rb: Path, images_cfg: dict, secrets: dict | None = None) -> Path:
    import yaml

    doc = yaml.safe_load(rb.read_text())
    doc["images"] = images_cfg
    if secrets:
        doc["secrets"] = secrets
    rb.write_text(yaml.safe_dump(doc, sort_keys=False))
    return rb


def test_pull_secret_and_override_reach_the_pods_and_the_secret_stays_out_of_state(kubeapi: Any, tmp_path: Path) -> None:
    import base64
    import json

    from tests.kube.conftest import kube_runbook
    from tests.util import engine

    config = json.dumps({"auths": {"registry.example": {"auth": base64.b64encode(f"bot:{CANARY}".encode()).decode()}}})
    (tmp_path / "dockerconfig.json").write_text(config)
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, extra_phases={2: [
        {"id": "pull-secret", "uses": "images.pull-secret", "needs": ["namespaces"]},
        {"id": "deploy", "uses": "kube.apply", "needs": ["pull-secret"], "with": {"sets": ["rentguy"], "wait": False}},
    ]})
    _with_images(rb, {"override": {"rentguy-api": "registry.example/rentguy-api:2.4.1"},
                      "pull_secret": {"secret": "regcred", "namespaces": ["rentguy"]}},
                 {"regcred": {"file": str(tmp_path / "dockerconfig.json")}})
    sd = tmp_path / "state"
    eng = engine(rb, sd)
    eng.run()
    secret = kubeapi.store.get("/secrets", "rentguy", "registry-credentials")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert base64.b64decode(secret["data"][".dockerconfigjson"]).decode() == config
    assert kubeapi.store.get("/secrets", "infra", "registry-credentials") is None  # only the namespaces named
    pod = kubeapi.store.get("apps/deployments", "rentguy", "rentguy-api")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/rentguy-api:2.4.1"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    db = kubeapi.store.get("apps/statefulsets", "rentguy", "rentguy-db")["spec"]["template"]["spec"]
    assert db["containers"][0]["image"] == "postgres:15-alpine"  # not overridden: the default
    written = "".join(p.read_text() for p in sd.iterdir() if p.is_file()) + "\n".join(eng.said)
    assert CANARY not in written and base64.b64encode(f"bot:{CANARY}".encode()).decode() not in written

    engine(rb, sd).rollback(step_id="pull-secret", cascade=True)
    assert kubeapi.store.get("/secrets", "rentguy", "registry-credentials") is None


def test_manifest_steps_refuse_to_guess_images_the_vps_should_give(kubeapi: Any, tmp_path: Path) -> None:
    from migrator.errors import PermanentError
    from tests.kube.conftest import kube_runbook
    from tests.util import engine

    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, extra_phases={2: [
        {"id": "deploy", "uses": "kube.apply", "with": {"sets": ["rentguy"], "wait": False}}]})
    _with_images(rb, {"from_vps": {"rentguy-api": "rentguy-api"}})
    with pytest.raises(PermanentError, match=r"deploy: the runbook's images.from_vps needs a step of type images.resolve"):
        engine(rb, tmp_path / "state").run()
    assert kubeapi.store.get("apps/deployments", "rentguy", "rentguy-api") is None


def test_a_digest_only_override_names_its_missing_tag() -> None:
    cfg = ImagesConfig.model_validate({"from_vps": {"db": "db"}, "override": {"db": f"postgres@{DIGEST}"}})
    refusal = images.resolve(cfg, {}, images.vps_images(_inv(db=("postgres", [])))).refusals()[0]
    assert '{key: db, from: "latest", to: "none", reason: ...}' in refusal
    same = images.resolve(cfg, {}, images.vps_images(_inv(db=("postgres", [f"postgres@{DIGEST}"]))))
    assert same.refusals() == [] and same.choices[0].change == "same"  # the very image, by digest
