"""validate.security: the audit on plain objects, and the step through the Kubernetes API stand-in."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from migrator import redact
from migrator.errors import PermanentError
from migrator.steps.validate_security import Cluster, audit, key_looking, secret_looking_name
from tests.util import engine, write_runbook
from tests.validate.conftest import kube_create, target_env

CANARY = "canary-Hx7q2-never-printed"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUQk9aXyZ3VwPq1Lr8sT5uY6vN2mEwCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n"


def deny_all(ns: str) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-all", "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


def config_map(ns: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


def workload(ns: str, name: str, *, kind: str = "Deployment", sa: str | None = None, automount: bool | None = False,
             env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "x", "env": env or []}]}
    if sa is not None:
        spec["serviceAccountName"] = sa
    if automount is not None:
        spec["automountServiceAccountToken"] = automount
    labels = {"app": name}
    body: dict[str, Any] = {"selector": {"matchLabels": labels},
                            "template": {"metadata": {"labels": labels}, "spec": spec}}
    if kind == "StatefulSet":
        body["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": body}


def service_account(ns: str, name: str, automount: bool | None = None) -> dict[str, Any]:
    sa: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}
    if automount is not None:
        sa["automountServiceAccountToken"] = automount
    return sa


def good_objects() -> list[dict[str, Any]]:
    secret_env = {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rentguy"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}},
        deny_all("rentguy"), deny_all("monitoring"),
        config_map("rentguy", "app-config", {"LOG_LEVEL": "info", "KEYCLOAK_URL": "http://keycloak",
                                             "DB_PASSWORD_FILE": "/run/secrets/db"}),
        config_map("rentguy", "kube-root-ca.crt", {"ca.crt": CERT}),
        service_account("rentguy", "rentguy-api"),
        workload("rentguy", "rentguy-api", sa="rentguy-api",
                 env=[secret_env, {"name": "POSTGRES_DB", "value": "rentguy"}, {"name": "KEYCLOAK_REALM", "value": "x"}]),
        service_account("monitoring", "prometheus"),
        workload("monitoring", "prometheus", kind="StatefulSet", sa="prometheus", automount=None),
    ]


def bad_objects() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rentguy"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "psra"}},
        deny_all("rentguy"),  # psra has none
        config_map("rentguy", "app-config", {"LOG_LEVEL": "info", "DATABASE_DSN": f"postgres://u:{CANARY}@db/x"}),
        service_account("rentguy", "rentguy-api", automount=False),
        workload("rentguy", "rentguy-api", sa="rentguy-api", automount=None,
                 env=[{"name": "DB_PASSWORD", "value": "hunter2-literal"}]),
        workload("psra", "psra-api", automount=False),  # default ServiceAccount
        service_account("psra", "psra-worker"),
        workload("psra", "psra-worker", sa="psra-worker", automount=None),  # token mounted, not allowed
    ]


def security_step(**with_: Any) -> dict[str, Any]:
    return {"id": "security", "uses": "validate.security", "with": with_, "gate": {"timeout": 1, "interval": 0.2}}


def _runbook(tmp_path: Path, kubeapi: Any, namespaces: list[str], **with_: Any) -> Path:
    return write_runbook(tmp_path, {4: [security_step(namespaces=namespaces, secret_names=["canary"], **with_)]},
                         environment=target_env(kubeapi.kubeconfig), secrets={"canary": {"env": "VALIDATE_CANARY"}})


def test_good_cluster_passes(tmp_path: Path, kubeapi: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VALIDATE_CANARY", CANARY)
    for obj in good_objects():
        kube_create(kubeapi, obj)
    rb = _runbook(tmp_path, kubeapi, ["rentguy", "monitoring"], automount_allowed=["monitoring/prometheus"])
    eng = engine(rb)
    eng.run()
    rec = eng.state.steps["security"]
    assert rec.status == "succeeded"
    assert rec.report["violations"] == [] and rec.report["workloads"] == 2 and rec.report["namespaces"] == 2


def test_bad_cluster_fails_naming_each_violation(tmp_path: Path, kubeapi: Any, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VALIDATE_CANARY", CANARY)
    for obj in bad_objects():
        kube_create(kubeapi, obj)
    rb = _runbook(tmp_path, kubeapi, ["rentguy", "psra", "wpcs"])
    eng = engine(rb)
    with pytest.raises(PermanentError) as err:
        eng.run()
    message = str(err.value)
    assert "namespace psra has no default-deny NetworkPolicy for Ingress and Egress" in message
    assert "namespace wpcs does not exist" in message
    assert "ConfigMap rentguy/app-config key DATABASE_DSN contains the value of secret canary" in message
    assert "Deployment rentguy/rentguy-api container app env DB_PASSWORD has a literal value" in message
    assert "Deployment psra/psra-api runs on the default ServiceAccount" in message
    assert "Deployment psra/psra-worker mounts the API token of ServiceAccount psra/psra-worker" in message
    assert "rentguy/rentguy-api mounts" not in message  # its ServiceAccount says automount false
    assert "namespace rentguy has no" not in message
    # the canary never leaves: not in the error, the state, the journal, nor anything said or printed
    state_dir = tmp_path / "state"
    seen = [message, eng.state.steps["security"].error or "", "\n".join(eng.said), *capsys.readouterr()]
    seen += [p.read_text() for p in state_dir.iterdir() if p.is_file()]
    for text in seen:
        assert CANARY not in text
        assert base64.b64encode(CANARY.encode()).decode() not in text


def test_allow_accepts_a_known_finding(tmp_path: Path, kubeapi: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VALIDATE_CANARY", CANARY)
    for obj in good_objects():
        kube_create(kubeapi, obj)
    kube_create(kubeapi, config_map("rentguy", "extra", {"SIGNING_KEY": "abc"}))
    rb = _runbook(tmp_path / "a", kubeapi, ["rentguy"])
    with pytest.raises(PermanentError, match="ConfigMap rentguy/extra key SIGNING_KEY"):
        engine(rb).run()
    rb = _runbook(tmp_path / "b", kubeapi, ["rentguy"], allow=["configmap-pattern:rentguy/extra/SIGNING_KEY"])
    engine(rb).run()


# -- the audit itself, with no redaction to hide a mistake -----------------------------------------------------
def _cluster(objects: list[dict[str, Any]], namespaces: list[str]) -> Cluster:
    present = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    c = Cluster(namespaces=namespaces, missing=[n for n in namespaces if n not in present])
    for o in objects:
        if o["kind"] == "NetworkPolicy":
            c.network_policies.append(o)
        elif o["kind"] == "ConfigMap":
            c.config_maps.append(o)
        elif o["kind"] == "ServiceAccount":
            c.service_accounts.append(o)
        elif o["kind"] in ("Deployment", "StatefulSet"):
            c.workloads.append(o)
    return c


def test_audit_messages_never_hold_the_value() -> None:
    redact.clear()
    objects = bad_objects()
    objects.append(config_map("psra", "b64", {"x": base64.b64encode(CANARY.encode()).decode()}))
    objects.append({**config_map("psra", "bin", {}), "binaryData": {"blob": base64.b64encode(CANARY.encode()).decode()}})
    objects.append(workload("psra", "leaky", sa="psra-worker", env=[{"name": "DSN", "value": f"x{CANARY}"}]))
    found = audit(_cluster(objects, ["rentguy", "psra"]), {"canary": CANARY}, set(), set())
    ids = {v.id for v in found}
    assert {"configmap-secret:rentguy/app-config/DATABASE_DSN", "configmap-secret:psra/b64/x",
            "configmap-secret:psra/bin/blob", "env:psra/leaky/app/DSN", "default-deny:psra",
            "default-sa:psra/psra-api", "automount:psra/psra-worker", "env:rentguy/rentguy-api/app/DB_PASSWORD"} <= ids
    for v in found:
        assert CANARY not in v.message and CANARY not in v.id


def test_split_default_deny_policies_count() -> None:
    ingress = {"kind": "NetworkPolicy", "metadata": {"name": "i", "namespace": "a"},
               "spec": {"podSelector": {}}}  # policyTypes defaults to Ingress
    egress = {"kind": "NetworkPolicy", "metadata": {"name": "e", "namespace": "a"},
              "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    allowing = {"kind": "NetworkPolicy", "metadata": {"name": "x", "namespace": "b"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}]}}
    ns = [{"kind": "Namespace", "metadata": {"name": n}} for n in ("a", "b")]
    found = audit(_cluster([*ns, ingress, egress, allowing], ["a", "b"]), {}, set(), set())
    assert [v.message for v in found] == [
        "namespace b has no default-deny NetworkPolicy for Ingress (podSelector {} with policyTypes "
        "Ingress+Egress and no rules)"]


@pytest.mark.parametrize("text, why", [
    ("-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----", "a private key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "a private key"),
    ("db.url=postgres://db\ndb.password=s3cr3t!", "an assignment to password"),
    ("API_KEY: abcdef", "an assignment to api_key"),
    ("token=gh0Aq9ZxL2mN8pR4sT6vW1yB3dF5hJ7kQ9cE", "an assignment to token"),
    ("x = aZ9qP2mL8nR4tV6wY1bD3fH5jK7cE0gS", "a high-entropy token"),
    (CERT, None), ("password: ${DB_PASSWORD}", None), ("password_file=/run/secrets/db", None),
    ("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", None),
    ("log_level=debug", None),
])
def test_key_looking(text: str, why: str | None) -> None:
    assert key_looking(text) == why


@pytest.mark.parametrize("name, secret", [
    ("DB_PASSWORD", True), ("JWT_SECRET", True), ("API_KEY", True), ("githubToken", True), ("dbPasswordFile", False), ("GITHUB_TOKEN", True),
    ("KEYCLOAK_URL", False), ("DB_PASSWORD_FILE", False), ("POSTGRES_DB", False), ("SECRET_KEY_BASE", True),
])
def test_secret_looking_name(name: str, secret: bool) -> None:
    assert secret_looking_name(name) is secret
