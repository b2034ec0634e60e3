"""Readiness simulation: kubectl rollout status succeeds on healthy workloads and fails, with the
reason, on workloads the failure knob marks."""

from __future__ import annotations

from kubernetes import client

from migrator.sandbox.kubeapi import FAIL_ANNOTATION, ServerHandle

from .conftest import Kubectl, deployment, wait_for


def test_rollout_status_succeeds_and_pods_exist(kubectl: Kubectl, apps: client.AppsV1Api, core: client.CoreV1Api,
                                                ns: str) -> None:
    created = apps.create_namespaced_deployment(ns, deployment("api", ns, replicas=2, labels={"app": "api",
                                                                                          "tier": "web"}))
    out = kubectl("rollout", "status", "deployment/api", "-n", ns, "--timeout=10s")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "successfully rolled out" in out.stdout
    d = apps.read_namespaced_deployment("api", ns)
    assert d.status.ready_replicas == 2 and d.status.available_replicas == 2 and d.status.updated_replicas == 2
    assert d.status.observed_generation == d.metadata.generation
    conditions = {c.type: c for c in d.status.conditions}
    assert conditions["Available"].status == "True" and conditions["Progressing"].reason == "NewReplicaSetAvailable"
    pods = core.list_namespaced_pod(ns, label_selector="app=api,tier=web").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.metadata.owner_references[0].uid == created.metadata.uid
        assert pod.status.phase == "Running" and all(c.ready for c in pod.status.container_statuses)
    # scaling and template changes are followed
    apps.patch_namespaced_deployment("api", ns, {"spec": {"replicas": 3}})
    out = kubectl("rollout", "status", "deployment/api", "-n", ns, "--timeout=10s")
    assert out.returncode == 0
    assert len(core.list_namespaced_pod(ns, label_selector="app=api").items) == 3
    apps.delete_namespaced_deployment("api", ns)
    assert core.list_namespaced_pod(ns).items == []  # pods are garbage collected with their owner


def test_rollout_status_fails_with_reason_when_annotated(kubectl: Kubectl, apps: client.AppsV1Api,
                                                         core: client.CoreV1Api, ns: str) -> None:
    reason = "CrashLoopBackOff: DATABASE_URL points at a host that does not resolve"
    apps.create_namespaced_deployment(ns, deployment("broken", ns, annotations={FAIL_ANNOTATION: reason}))
    out = kubectl("rollout", "status", "deployment/broken", "-n", ns, "--timeout=5s")
    assert out.returncode != 0
    assert "DATABASE_URL points at a host that does not resolve" in out.stderr
    assert "exceeded its progress deadline" in out.stderr
    pod = core.list_namespaced_pod(ns, label_selector="app=broken").items[0]
    waiting = pod.status.container_statuses[0].state.waiting
    assert waiting.reason == "CrashLoopBackOff" and pod.status.container_statuses[0].restart_count > 0
    events = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={pod.metadata.name}").items
    assert events and events[0].reason == "BackOff" and "does not resolve" in events[0].message
    progressing = {c.type: c for c in apps.read_namespaced_deployment("broken", ns).status.conditions}["Progressing"]
    assert progressing.reason == "ProgressDeadlineExceeded" and "does not resolve" in progressing.message
    # lifting the knob at run time heals it
    apps.patch_namespaced_deployment("broken", ns, {"metadata": {"annotations": {FAIL_ANNOTATION: None}}})
    wait_for(lambda: apps.read_namespaced_deployment("broken", ns).status.ready_replicas == 1, what="healed")
    assert kubectl("rollout", "status", "deployment/broken", "-n", ns, "--timeout=5s").returncode == 0


def test_server_side_failure_list_and_runtime_knob(kube: ServerHandle, kubectl: Kubectl, apps: client.AppsV1Api,
                                                   core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "preset"}})
    apps.create_namespaced_deployment("preset", deployment("doomed", "preset"))  # named at server start
    out = kubectl("rollout", "status", "deployment/doomed", "-n", "preset", "--timeout=5s")
    assert out.returncode != 0 and "preset failure" in out.stderr
    kube.set_failure("preset", "doomed", None)
    wait_for(lambda: apps.read_namespaced_deployment("doomed", "preset").status.ready_replicas == 1, what="ready")
    core.delete_namespace("preset")


def test_statefulset_rollout_and_claims(kubectl: Kubectl, apps: client.AppsV1Api, core: client.CoreV1Api,
                                        ns: str) -> None:
    sts = deployment("db", ns, replicas=2)
    sts["kind"] = "StatefulSet"
    sts["spec"]["serviceName"] = "db"
    apps.create_namespaced_stateful_set(ns, sts)
    core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": "data-db-0"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}})
    out = kubectl("rollout", "status", "statefulset/db", "-n", ns, "--timeout=10s")
    assert out.returncode == 0, out.stdout + out.stderr
    names = sorted(p.metadata.name for p in core.list_namespaced_pod(ns).items)
    assert names == ["db-0", "db-1"]
    s = apps.read_namespaced_stateful_set("db", ns)
    assert s.status.ready_replicas == 2 and s.status.current_revision == s.status.update_revision
    pvc = wait_for(lambda: (p := core.read_namespaced_persistent_volume_claim("data-db-0", ns)).status.phase == "Bound"
                   and p, what="claim bound")
    assert pvc.status.capacity == {"storage": "5Gi"}
