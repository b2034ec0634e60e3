"""validate.security: the cluster's security posture, read through the Kubernetes API.

Checks, in every namespace the runbook lists: a default-deny NetworkPolicy for ingress and egress; no secret
value (or key-looking text) in a ConfigMap; no literal secret-looking env value in a workload; no workload on
the `default` ServiceAccount; no mounted API token unless the runbook allows it for that ServiceAccount.

A violation names the object, the key and (for a leaked value) the runbook secret's NAME, never a value.
The audit itself (`audit`) is a pure function of the objects, so it is tested without a cluster.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from migrator.adapters import resources
from migrator.adapters.kube import Ref
from migrator.errors import PermanentError
from migrator.steps.base import StepContext, StrictModel, step_type
from migrator.steps.validate import Validation

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# Env/ConfigMap key names that hold secrets: a whole segment of the name (KEYCLOAK_URL is not a KEY).
SECRET_WORDS = {"PASSWORD", "PASSWD", "PASS", "PWD", "SECRET", "TOKEN", "KEY", "APIKEY", "PRIVATEKEY", "CREDENTIALS"}
# ...unless the name says the value is where the secret is, not the secret (DB_PASSWORD_FILE).
POINTER_WORDS = {"FILE", "PATH", "DIR", "REF", "NAME", "ID", "USER", "USERNAME"}
PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
ASSIGNMENT = re.compile(r"(?i)(?:^|[^a-z0-9])(password|passwd|pwd|secret|token|api[_-]?key)\s*[:=]\s*[\"']?([^\s\"'&;,]+)")
PLACEHOLDER = re.compile(r"^(?:\$\{?|\{\{|<|%\(|/|\*+$|changeme$|x+$)", re.IGNORECASE)
CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)
TOKENISH = re.compile(r"[A-Za-z0-9+/_=-]{32,}")
MIN_SECRET_LEN = 6  # shorter runbook secrets would match unrelated text


@dataclass(frozen=True)
class Violation:
    id: str  # stable: what `allow:` matches, e.g. "configmap-pattern:rentguy/app-config/LOG_KEY"
    message: str


@dataclass
class Cluster:
    """What the audit reads, per namespace (absent namespaces are listed in `missing`)."""

    namespaces: list[str]
    missing: list[str] = field(default_factory=list)
    network_policies: list[dict[str, Any]] = field(default_factory=list)
    config_maps: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[dict[str, Any]] = field(default_factory=list)
    service_accounts: list[dict[str, Any]] = field(default_factory=list)


def _segments(name: str) -> list[str]:
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)  # dbPassword -> db_Password
    return [s for s in re.split(r"[^A-Za-z0-9]+", snake.upper()) if s]


def secret_looking_name(name: str) -> bool:
    parts = _segments(name)
    return bool(parts) and bool(SECRET_WORDS & set(parts)) and parts[-1] not in POINTER_WORDS


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def key_looking(text: str) -> str | None:
    """Why `text` looks like it carries a secret (private key, password=..., random token), or None."""
    if PRIVATE_KEY.search(text):
        return "a private key"
    for m in ASSIGNMENT.finditer(text):
        if not PLACEHOLDER.match(m.group(2)):
            return f"an assignment to {m.group(1).lower()}"
    stripped = CERTIFICATE.sub("", text)  # certificates are public: kube-root-ca.crt is in every namespace
    for m in TOKENISH.finditer(stripped):
        word = m.group(0)
        mixed = any(c.islower() for c in word) and any(c.isupper() for c in word) and any(c.isdigit() for c in word)
        if mixed and _entropy(word) >= 4.3:
            return "a high-entropy token"
    return None


def _contains_secret(text: str, secrets: dict[str, str]) -> str | None:
    for name, value in secrets.items():
        if len(value) < MIN_SECRET_LEN:
            continue
        if value in text or base64.b64encode(value.encode()).decode() in text:
            return name
    return None


def _ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


# -- the checks ---------------------------------------------------------------------------------------------
def _denies(policy: dict[str, Any], direction: str) -> bool:
    """Does this policy select every pod and allow nothing in `direction` ('Ingress' or 'Egress')?"""
    spec = policy.get("spec") or {}
    selector = spec.get("podSelector") or {}
    if selector.get("matchLabels") or selector.get("matchExpressions"):
        return False
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    return direction in types and not spec.get(direction.lower())


def check_default_deny(c: Cluster) -> list[Violation]:
    out = []
    for ns in c.namespaces:
        if ns in c.missing:
            out.append(Violation(f"namespace:{ns}", f"namespace {ns} does not exist"))
            continue
        mine = [p for p in c.network_policies if (p.get("metadata") or {}).get("namespace") == ns]
        lacking = [d for d in ("Ingress", "Egress") if not any(_denies(p, d) for p in mine)]
        if lacking:
            out.append(Violation(f"default-deny:{ns}",
                                 f"namespace {ns} has no default-deny NetworkPolicy for {' and '.join(lacking)} "
                                 "(podSelector {} with policyTypes Ingress+Egress and no rules)"))
    return out


def check_config_maps(c: Cluster, secrets: dict[str, str]) -> list[Violation]:
    out = []
    for cm in c.config_maps:
        where = _ref(cm)
        entries = [(k, str(v)) for k, v in (cm.get("data") or {}).items()]
        for k, v in (cm.get("binaryData") or {}).items():
            try:
                entries.append((k, base64.b64decode(str(v)).decode("utf-8", "replace")))
            except (binascii.Error, ValueError):
                continue
        for key, value in entries:
            leaked = _contains_secret(value, secrets)
            if leaked:
                out.append(Violation(f"configmap-secret:{where}/{key}",
                                     f"ConfigMap {where} key {key} contains the value of secret {leaked}"))
                continue
            why = key_looking(value)
            if why is None and value.strip() and secret_looking_name(key):
                why = "a value under a secret-looking key name"
            if why:
                out.append(Violation(f"configmap-pattern:{where}/{key}",
                                     f"ConfigMap {where} key {key} contains {why}; move it to a Secret"))
    return out


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}


def check_env(c: Cluster, secrets: dict[str, str]) -> list[Violation]:
    out = []
    for w in c.workloads:
        where = f"{w.get('kind')} {_ref(w)}"
        spec = _pod_spec(w)
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            for env in container.get("env") or []:
                name, value = str(env.get("name", "")), env.get("value")
                if value is None or value == "":
                    continue
                vid = f"env:{_ref(w)}/{container.get('name')}/{name}"
                leaked = _contains_secret(str(value), secrets)
                if leaked:
                    out.append(Violation(vid, f"{where} container {container.get('name')} env {name} holds the value "
                                              f"of secret {leaked} literally; use valueFrom.secretKeyRef"))
                elif secret_looking_name(name):
                    out.append(Violation(vid, f"{where} container {container.get('name')} env {name} has a literal "
                                              "value; a secret-looking variable must use valueFrom.secretKeyRef"))
    return out


def check_service_accounts(c: Cluster, automount_allowed: set[str]) -> list[Violation]:
    out = []
    accounts = {_ref(sa): sa for sa in c.service_accounts}
    for w in c.workloads:
        ns = (w.get("metadata") or {}).get("namespace")
        where = f"{w.get('kind')} {_ref(w)}"
        spec = _pod_spec(w)
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if sa_name == "default":
            out.append(Violation(f"default-sa:{_ref(w)}",
                                 f"{where} runs on the default ServiceAccount; give it its own"))
        automount = spec.get("automountServiceAccountToken")
        if automount is None:  # the pod inherits the ServiceAccount's setting, true when unset
            sa = accounts.get(f"{ns}/{sa_name}") or {}
            automount = sa.get("automountServiceAccountToken")
        if automount is not False and f"{ns}/{sa_name}" not in automount_allowed:
            out.append(Violation(f"automount:{_ref(w)}",
                                 f"{where} mounts the API token of ServiceAccount {ns}/{sa_name}: set "
                                 "automountServiceAccountToken: false (or list it in automount_allowed)"))
    return out


def audit(c: Cluster, secrets: dict[str, str], automount_allowed: set[str], allow: set[str]) -> list[Violation]:
    found = [*check_default_deny(c), *check_config_maps(c, secrets), *check_env(c, secrets),
             *check_service_accounts(c, automount_allowed)]
    return [v for v in found if v.id not in allow]


# -- the step -----------------------------------------------------------------------------------------------
class SecurityParams(StrictModel):
    # A list, or the runbook's `vars.namespaces` map (its values are the namespaces).
    namespaces: list[str] | dict[str, str] = Field(min_length=1)
    secret_names: list[str] = Field(default_factory=list)  # runbook secrets whose values must not leak
    automount_allowed: list[str] = Field(default_factory=list)  # "ns/serviceaccount" that may mount a token
    allow: list[str] = Field(default_factory=list)  # violation ids accepted on purpose (see the report)


def read_cluster(ctx: StepContext, namespaces: list[str]) -> Cluster:
    """Everything the audit needs, one list call per kind and namespace."""
    kube = resources.kube(ctx.resource, ctx.runbook)
    c = Cluster(namespaces=namespaces)
    for ns in namespaces:
        if kube.get(Ref("Namespace", ns)) is None:
            c.missing.append(ns)
            continue
        c.network_policies += kube.list_objects("NetworkPolicy", ns)
        c.config_maps += kube.list_objects("ConfigMap", ns)
        c.service_accounts += kube.list_objects("ServiceAccount", ns)
        for kind in WORKLOAD_KINDS:  # a server without DaemonSets answers 404: an empty list
            c.workloads += [{**w, "kind": kind} for w in kube.list_objects(kind, ns)]
    return c


@step_type("validate.security")
class Security(Validation[SecurityParams]):
    """Default-deny policies, no secrets in ConfigMaps or literal env, own ServiceAccounts, no needless tokens."""

    description = "security posture of the cluster's namespaces"

    def __init__(self, ctx: StepContext, params: SecurityParams) -> None:
        super().__init__(ctx, params)
        self._report: dict[str, Any] = {}

    def namespaces(self) -> list[str]:
        ns = self.params.namespaces
        return list(dict.fromkeys(ns.values() if isinstance(ns, dict) else ns))

    def verify(self) -> None:
        p = self.params
        secrets = {name: self.ctx.secret(name) for name in p.secret_names}  # in memory only
        c = read_cluster(self.ctx, self.namespaces())
        found = audit(c, secrets, set(p.automount_allowed), set(p.allow))
        self._report = {"namespaces": len(c.namespaces), "config_maps": len(c.config_maps),
                        "workloads": len(c.workloads), "violations": [v.id for v in found]}
        self.ctx.journal("validate-security", violations=[v.id for v in found], namespaces=c.namespaces)
        if found:
            raise PermanentError(f"{len(found)} security violation(s): " + "; ".join(v.message for v in found[:40])
                                 + (f"; and {len(found) - 40} more" if len(found) > 40 else ""))

    def report(self) -> dict[str, Any]:
        return self._report
