"""DaemonSets on the stand-in's one node (`sandbox-node`): one pod each, rollout status, the failure
knob, defaults, validation, discovery and `kubectl get ds`."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from migrator.adapters.kube import rollout_progress
from migrator.manifests import render
from migrator.sandbox.kubeapi import FAIL_ANNOTATION, ServerHandle

from .conftest import Kubectl, deployment, http, wait_for


def daemonset(name: str, ns: str, annotations: dict[str, str] | None = None,
              node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    ds = deployment(name, ns, annotations=annotations)
    ds["kind"] = "DaemonSet"
    del ds["spec"]["replicas"]
    if node_selector is not None:
        ds["spec"]["template"]["spec"]["nodeSelector"] = node_selector
    return ds


def owned_pods(core: client.CoreV1Api, ns: str, uid: str) -> list[Any]:
    return [p for p in core.list_namespaced_pod(ns).items
            if any(r.uid == uid for r in p.metadata.owner_references or [])]


def test_daemonset_runs_one_pod_on_the_node_and_rolls_out(kubectl: Kubectl, apps: client.AppsV1Api,
                                                          core: client.CoreV1Api, ns: str) -> None:
    created = apps.create_namespaced_daemon_set(ns, daemonset("agent", ns))
    # what the API server defaults, readable at once by the typed client (the four counters are not omitempty)
    assert created.spec.update_strategy.type == "RollingUpdate"
    assert created.spec.update_strategy.rolling_update.max_unavailable == 1
    assert created.spec.update_strategy.rolling_update.max_surge == 0
    assert created.spec.revision_history_limit == 10
    assert created.spec.template.spec.restart_policy == "Always"
    assert created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert created.status.desired_number_scheduled == 0 and created.status.number_ready == 0
    assert created.metadata.generation == 1

    out = kubectl("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=10s")
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'daemon set "agent" successfully rolled out' in out.stdout
    s = apps.read_namespaced_daemon_set("agent", ns).status
    assert (s.desired_number_scheduled, s.current_number_scheduled, s.number_ready, s.updated_number_scheduled,
            s.number_available, s.number_misscheduled) == (1, 1, 1, 1, 1, 0)
    assert s.observed_generation == 1 and s.number_unavailable is None

    pods = owned_pods(core, ns, created.metadata.uid)
    assert len(pods) == 1
    pod = pods[0]
    assert re.fullmatch(r"agent-[a-z0-9]{5}", pod.metadata.name)
    assert pod.metadata.labels["app"] == "agent" and pod.metadata.labels["controller-revision-hash"]
    assert pod.metadata.labels["pod-template-generation"] == "1"
    ref = pod.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.controller, ref.api_version) == ("DaemonSet", "agent", True, "apps/v1")
    assert pod.spec.node_name == "sandbox-node"
    assert pod.status.phase == "Running" and pod.status.container_statuses[0].ready
    assert any(t.key == "node.kubernetes.io/unreachable" for t in pod.spec.tolerations)

    # a template change is a new revision: generation 2, the pod replaced (RollingUpdate)
    apps.patch_namespaced_daemon_set("agent", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "sevensa/app:2.0"}]}}}})
    out = kubectl("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=10s")
    assert out.returncode == 0, out.stdout + out.stderr
    ds = apps.read_namespaced_daemon_set("agent", ns)
    assert ds.metadata.generation == 2 and ds.status.observed_generation == 2
    new = wait_for(lambda: [p for p in owned_pods(core, ns, created.metadata.uid)
                            if p.spec.containers[0].image == "sevensa/app:2.0"], what="new pod")
    assert len(owned_pods(core, ns, created.metadata.uid)) == 1 and new[0].metadata.name != pod.metadata.name

    # a deleted pod comes back (the controller keeps one per node)
    core.delete_namespaced_pod(new[0].metadata.name, ns)
    wait_for(lambda: len(owned_pods(core, ns, created.metadata.uid)) == 1, what="pod recreated")

    # no /scale for DaemonSets
    assert kubectl("scale", "daemonset/agent", "-n", ns, "--replicas=2").returncode != 0
    apps.delete_namespaced_daemon_set("agent", ns)
    assert core.list_namespaced_pod(ns).items == []  # pods go with their owner


def test_failure_knob_keeps_a_daemonset_unready(kube: ServerHandle, kubectl: Kubectl, apps: client.AppsV1Api,
                                                core: client.CoreV1Api, ns: str) -> None:
    reason = "CrashLoopBackOff: promtail cannot read /var/log/pods"
    apps.create_namespaced_daemon_set(ns, daemonset("logs", ns, annotations={FAIL_ANNOTATION: reason}))
    out = kubectl("rollout", "status", "daemonset/logs", "-n", ns, "--timeout=5s")
    assert out.returncode != 0
    assert "daemonset/logs in namespace" in out.stderr and "cannot read /var/log/pods" in out.stderr
    live = wait_for(lambda: (d := apps.read_namespaced_daemon_set("logs", ns)).status.observed_generation and d,
                    what="status")
    s = live.status
    assert (s.desired_number_scheduled, s.current_number_scheduled, s.number_ready, s.number_unavailable,
            s.updated_number_scheduled) == (1, 1, 0, 1, 1)
    assert not s.number_available
    pod = core.list_namespaced_pod(ns, label_selector="app=logs").items[0]
    cs = pod.status.container_statuses[0]
    assert cs.state.waiting.reason == "CrashLoopBackOff" and cs.restart_count > 0 and not cs.ready
    events = core.list_namespaced_event(ns, field_selector="reason=BackOff").items
    assert {e.involved_object.kind for e in events} == {"Pod", "DaemonSet"}
    assert all("cannot read /var/log/pods" in e.message for e in events)

    # lifting the annotation heals it; the server-side failures map does the same as the annotation
    apps.patch_namespaced_daemon_set("logs", ns, {"metadata": {"annotations": {FAIL_ANNOTATION: None}}})
    assert kubectl("rollout", "status", "daemonset/logs", "-n", ns, "--timeout=10s").returncode == 0
    kube.set_failure(ns, "logs", "ImagePullBackOff: grafana/promtail:9.9 not found")
    wait_for(lambda: apps.read_namespaced_daemon_set("logs", ns).status.number_ready == 0, what="failing again")
    pod = core.list_namespaced_pod(ns, label_selector="app=logs").items[0]
    assert pod.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"
    kube.set_failure(ns, "logs", None)
    wait_for(lambda: apps.read_namespaced_daemon_set("logs", ns).status.number_ready == 1, what="healed")


def test_node_selector_the_node_does_not_match_schedules_nothing(kubectl: Kubectl, apps: client.AppsV1Api,
                                                                 core: client.CoreV1Api, ns: str) -> None:
    apps.create_namespaced_daemon_set(ns, daemonset("gpu", ns, node_selector={"accelerator": "nvidia"}))
    apps.create_namespaced_daemon_set(ns, daemonset("linux", ns, node_selector={"kubernetes.io/os": "linux"}))
    for name in ("gpu", "linux"):
        out = kubectl("rollout", "status", f"daemonset/{name}", "-n", ns, "--timeout=10s")
        assert out.returncode == 0, out.stdout + out.stderr
    gpu = apps.read_namespaced_daemon_set("gpu", ns).status
    assert gpu.desired_number_scheduled == 0 and gpu.observed_generation == 1
    assert [p.metadata.labels["app"] for p in core.list_namespaced_pod(ns).items] == ["linux"]

    out = kubectl("get", "ds", "-n", ns)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE",
                                "SELECTOR", "AGE"]
    rows = {line.split()[0]: line.split()[1:7] for line in lines[1:]}
    assert rows == {"gpu": ["0", "0", "0", "0", "0", "accelerator=nvidia"],
                    "linux": ["1", "1", "1", "1", "1", "kubernetes.io/os=linux"]}


def test_kubectl_get_ds_and_apply_the_platforms_promtail(kubectl: Kubectl, apps: client.AppsV1Api, ns: str) -> None:
    vars_ = render.variables({"domain": "test.example", "namespaces": {"logging": ns}})
    promtail = next(o for o in render.render_set("logging", vars_) if o["kind"] == "DaemonSet")
    out = kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(promtail))
    assert out.returncode == 0, out.stderr
    assert "daemonset.apps/promtail serverside-applied" in out.stdout
    out = kubectl("rollout", "status", "ds/promtail", "-n", ns, "--timeout=10s")
    assert out.returncode == 0, out.stdout + out.stderr
    out = kubectl("get", "ds", "-n", ns)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split()[:7] == ["promtail", "1", "1", "1", "1", "1", "<none>"]
    live = json.loads(kubectl("get", "daemonset", "promtail", "-n", ns, "-o", "json").stdout)
    assert rollout_progress(live) is None  # the migrator's own gate agrees
    assert kubectl("get", "all", "-n", ns, "-o", "name").stdout.count("daemonset.apps/promtail") == 1


def rejected(apps: client.AppsV1Api, ns: str, obj: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_daemon_set(ns, obj)
    assert err.value.status == 422
    return str(json.loads(err.value.body)["message"])


def test_daemonset_validation(apps: client.AppsV1Api, ns: str) -> None:
    bad = daemonset("bad", ns)
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    assert "`selector` does not match template `labels`" in rejected(apps, ns, bad)
    bad = daemonset("bad", ns)
    bad["spec"]["template"]["spec"]["containers"] = []
    assert "spec.template.spec.containers: Required value" in rejected(apps, ns, bad)
    bad = daemonset("bad", ns)
    bad["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert 'spec.template.spec.restartPolicy: Unsupported value: "OnFailure"' in rejected(apps, ns, bad)
    bad = daemonset("bad", ns)
    bad["spec"]["updateStrategy"] = {"type": "Recreate"}
    assert 'spec.updateStrategy.type: Unsupported value: "Recreate"' in rejected(apps, ns, bad)
    bad = daemonset("bad", ns)
    bad["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}
    assert "may not be 0 when `maxSurge` is 0" in rejected(apps, ns, bad)

    ok = daemonset("ondelete", ns)
    ok["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert apps.create_namespaced_daemon_set(ns, ok).spec.update_strategy.rolling_update is None


def test_discovery_lists_daemonsets(kube: ServerHandle, kubectl: Kubectl, dyn: DynamicClient, ns: str) -> None:
    code, doc = http("GET", kube.url + "/apis/apps/v1")
    by_name = {r["name"]: r for r in doc["resources"]}
    ds = by_name["daemonsets"]
    assert (ds["kind"], ds["namespaced"], ds["shortNames"]) == ("DaemonSet", True, ["ds"])
    assert "watch" in ds["verbs"] and "all" in ds["categories"]
    assert by_name["daemonsets/status"]["verbs"] == ["get", "patch", "update"]
    assert "daemonsets/scale" not in by_name
    assert dyn.resources.get(api_version="apps/v1", kind="DaemonSet").name == "daemonsets"
    out = kubectl("api-resources", "-o", "name")
    assert "daemonsets.apps" in out.stdout.split()
    assert http("GET", f"{kube.url}/apis/apps/v1/namespaces/{ns}/daemonsets/x/scale")[0] == 404
