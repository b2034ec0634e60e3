"""The manifests and their renderer: every service of the architecture, variables applied, nothing left over."""

from __future__ import annotations

import json
from typing import Any

import pytest

from migrator.errors import PermanentError
from migrator.manifests import render
from migrator.steps.kube import namespace_objects, runbook_namespaces

NAMESPACES = ["rentguy", "psra", "wpcs", "ai", "infra", "monitoring", "logging", "ingress"]


def all_objects(**overrides: Any) -> list[dict[str, Any]]:
    vars_ = render.variables(overrides.pop("runbook_vars", None), overrides.pop("storage_class", None), overrides)
    # the namespaces come from the runbook's vars (kube.namespaces), the rest from the manifest sets
    namespaces = namespace_objects(runbook_namespaces(vars_))
    return namespaces + [o for s in render.available_sets() for o in render.render_set(s, vars_)]


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": o for o in objs if o["kind"] == kind}


def test_every_service_of_the_architecture_is_there() -> None:
    objs = all_objects()
    workloads = {**by_kind(objs, "Deployment"), **by_kind(objs, "StatefulSet"), **by_kind(objs, "DaemonSet")}
    assert set(workloads) == {
        "rentguy/rentguy-frontend", "rentguy/rentguy-api", "rentguy/rentguy-db", "rentguy/rentguy-redis",
        "psra/psra-frontend", "psra/psra-api", "psra/psra-origin-engine", "psra/psra-db",
        "wpcs/wpcs-api", "wpcs/wpcs-wordpress", "wpcs/wpcs-db", "wpcs/wpcs-mysql",
        "ai/ai-langgraph", "ai/ai-n8n", "ai/ai-claude-chat", "ai/ai-trading-dashboard",
        "infra/openbao", "infra/keycloak", "infra/keycloak-db", "ingress/traefik",
        "monitoring/prometheus", "monitoring/grafana", "monitoring/alertmanager",
        "logging/loki", "logging/promtail", "logging/vector",
    }
    for db in ("rentguy/rentguy-db", "psra/psra-db", "wpcs/wpcs-db", "infra/keycloak-db", "infra/openbao",
               "wpcs/wpcs-mysql", "rentguy/rentguy-redis"):
        sts = workloads[db]
        assert sts["kind"] == "StatefulSet"
        claim = sts["spec"]["volumeClaimTemplates"][0]
        assert claim["spec"]["storageClassName"] == "standard"
    assert by_kind(objs, "PersistentVolumeClaim")["wpcs/wpcs-uploads"]
    assert set(by_kind(objs, "Namespace")) == {f"/{n}" for n in NAMESPACES}


def test_workloads_have_probes_resources_and_their_own_service_account() -> None:
    objs = all_objects()
    accounts = by_kind(objs, "ServiceAccount")
    for key, w in {**by_kind(objs, "Deployment"), **by_kind(objs, "StatefulSet"), **by_kind(objs, "DaemonSet")}.items():
        spec = w["spec"]["template"]["spec"]
        ns = w["metadata"]["namespace"]
        account = accounts[f"{ns}/{spec['serviceAccountName']}"]
        # the pod mounts a token exactly when its account allows it
        assert spec["automountServiceAccountToken"] == account["automountServiceAccountToken"], key
        for c in spec["containers"]:
            assert c["livenessProbe"] and c["readinessProbe"], key
            assert c["resources"]["requests"] and c["resources"]["limits"], key
        assert w["spec"]["selector"]["matchLabels"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
    tokens = {k for k, a in accounts.items() if a["automountServiceAccountToken"]}
    assert tokens == {"ingress/traefik", "monitoring/prometheus", "logging/promtail", "infra/openbao"}


def test_ingresses_follow_the_document() -> None:
    ing = by_kind(all_objects(), "Ingress")["rentguy/rentguy-ingress"]
    notes = ing["metadata"]["annotations"]
    assert notes["kubernetes.io/ingress.class"] == "traefik"
    assert notes["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"
    assert notes["traefik.ingress.kubernetes.io/router.tls"] == "true"
    assert [r["host"] for r in ing["spec"]["rules"]] == ["rentguy.sevensa.nl", "api.rentguy.sevensa.nl"]
    assert ing["spec"]["tls"] == [{"hosts": ["rentguy.sevensa.nl", "api.rentguy.sevensa.nl"], "secretName": "rentguy-tls"}]


def test_network_policies_deny_by_default_then_allow_what_the_document_names() -> None:
    pols = by_kind(all_objects(), "NetworkPolicy")
    for ns in NAMESPACES:
        deny = pols[f"{ns}/default-deny-all"]["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        dns = pols[f"{ns}/allow-dns"]["spec"]["egress"][0]
        assert {p["port"] for p in dns["ports"]} == {53}
    rule = pols["rentguy/allow-from-ingress"]["spec"]["ingress"][0]["from"][0]
    assert rule == {"namespaceSelector": {"matchLabels": {"name": "ingress"}}, "podSelector": {"matchLabels": {"app": "traefik"}}}
    infra = pols["rentguy/allow-to-infra"]["spec"]["egress"][0]
    assert infra["to"] == [{"namespaceSelector": {"matchLabels": {"name": "infra"}}}]
    assert sorted(p["port"] for p in infra["ports"]) == [8080, 8200]


def test_variables_come_from_the_runbook_the_target_and_the_step() -> None:
    objs = all_objects(runbook_vars={"domain": "kind.test", "replicas": {"rentguy-api": 1},
                                     "namespaces": {"rentguy": "rg"}},
                       storage_class="local-path", images={"rentguy-api": "registry.local/api:1.2"})
    api = by_kind(objs, "Deployment")["rg/rentguy-api"]
    assert api["spec"]["replicas"] == 1  # a whole-value reference keeps its type
    assert api["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/api:1.2"
    assert by_kind(objs, "StatefulSet")["rg/rentguy-db"]["spec"]["volumeClaimTemplates"][0]["spec"][
        "storageClassName"] == "local-path"
    assert by_kind(objs, "Namespace")["/rg"]["metadata"]["labels"]["name"] == "rg"
    assert by_kind(objs, "Ingress")["rg/rentguy-ingress"]["spec"]["rules"][0]["host"] == "rentguy.kind.test"
    # policies elsewhere name the renamed namespace
    assert "rg" in json.dumps(by_kind(objs, "NetworkPolicy")["infra/allow-from-apps"])
    assert "${" not in json.dumps(objs)


def test_substitution_is_data_not_yaml() -> None:
    evil = "x\n---\nkind: ClusterRoleBinding"
    objs = render.render_docs([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
                                "data": {"k": "${vars.v}", "lit": "$${vars.v}"}}], {"v": evil}, "test")
    assert objs == [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
                     "data": {"k": evil, "lit": "${vars.v}"}}]


def test_an_unknown_variable_names_the_set_and_the_fix() -> None:
    with pytest.raises(PermanentError, match=r"manifest set rentguy \(document 2\): vars.replicas.rentguy-frontend is not defined.*runbook.s vars"):
        render.render_set("rentguy", {"namespaces": {"rentguy": "r", "infra": "i"}, "domain": "d"})
    with pytest.raises(PermanentError, match="no manifest set 'nope'"):
        render.render_set("nope", render.variables())


def test_dependency_order() -> None:
    objs = render.sort_objects(all_objects())
    kinds = [o["kind"] for o in objs]
    order = ["Namespace", "ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Service", "StatefulSet",
             "Deployment", "Ingress", "NetworkPolicy"]
    firsts = [kinds.index(k) for k in order]
    assert firsts == sorted(firsts)
    with pytest.raises(PermanentError, match="defined twice"):
        render.sort_objects(objs + objs[:1])
