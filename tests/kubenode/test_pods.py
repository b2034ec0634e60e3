"""Pods run as containers on the node: status, readiness, restarts, workloads, claims, DNS."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from migrator.sandbox.kubeapi import ServerHandle

from .conftest import BASE, POSTGRES, PYTHON, Kubectl, busybox_pod, pod_ready, read_pod, wait_for

HTTPD = ("mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && exec httpd -f -p 8080 -h /www")


def web_deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{
                         "name": "web", "image": BASE, "command": ["sh", "-c", HTTPD],
                         "ports": [{"name": "http", "containerPort": 8080}],
                         "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}]}}}}


def test_a_pod_runs_and_reports_its_status(core: client.CoreV1Api, cluster: ServerHandle, ns: str) -> None:
    core.create_namespaced_pod(ns, busybox_pod("sleeper", "echo started; exec sleep 3600"))
    wait_for(lambda: pod_ready(core, ns, "sleeper"), what="pod ready")
    pod = core.read_namespaced_pod("sleeper", ns)
    assert pod.status.phase == "Running"
    # on the node's pod network: 10.244/16, or the next free /16 when another node here routes that one
    assert pod.status.pod_ip.startswith(cluster.kubelet.gateway.rsplit(".", 2)[0] + ".")
    cs = pod.status.container_statuses[0]
    assert cs.ready and cs.started and cs.restart_count == 0 and cs.container_id.startswith("docker://")
    assert cs.state.running.started_at is not None
    # the container really exists on the node, with the pod's labels
    ids = [c for c in cluster.kubelet.node.list_pod_containers(pod.metadata.uid)]
    assert {c["Labels"]["io.sandbox.role"] for c in ids} == {"sandbox", "app"}
    assert core.read_namespaced_pod_log("sleeper", ns) == "started\n"
    core.delete_namespaced_pod("sleeper", ns)
    wait_for(lambda: not cluster.kubelet.node.list_pod_containers(pod.metadata.uid), what="containers removed")


def test_restart_policy_always_restarts_a_crashing_container(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, busybox_pod("crasher", "echo attempt; exit 3"))

    def restarted() -> Any:
        cs = (core.read_namespaced_pod("crasher", ns).status.container_statuses or [None])[0]
        return cs if cs is not None and cs.restart_count >= 2 else None

    cs = wait_for(restarted, what="two restarts")
    assert cs.last_state.terminated.exit_code == 3 and cs.last_state.terminated.reason == "Error"
    assert not cs.ready
    pod = core.read_namespaced_pod("crasher", ns)
    assert pod.status.phase == "Running"
    assert core.read_namespaced_pod_log("crasher", ns, previous=True) == "attempt\n"


def test_restart_policy_never_leaves_a_failed_pod(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, busybox_pod("once", "echo bye >&2; exit 7", restart="Never"))
    wait_for(lambda: core.read_namespaced_pod("once", ns).status.phase == "Failed", what="Failed")
    cs = core.read_namespaced_pod("once", ns).status.container_statuses[0]
    assert cs.state.terminated.exit_code == 7 and cs.restart_count == 0
    core.create_namespaced_pod(ns, busybox_pod("ok", "true", restart="OnFailure"))
    wait_for(lambda: core.read_namespaced_pod("ok", ns).status.phase == "Succeeded", what="Succeeded")


def test_missing_image_is_image_pull_back_off(core: client.CoreV1Api, ns: str) -> None:
    pod = busybox_pod("nope", "true")
    pod["spec"]["containers"][0]["image"] = "example.invalid/nothing:1"
    core.create_namespaced_pod(ns, pod)

    def waiting() -> Any:
        cs = core.read_namespaced_pod("nope", ns).status.container_statuses
        return cs and cs[0].state.waiting and cs[0].state.waiting.reason == "ImagePullBackOff"

    wait_for(waiting, what="ImagePullBackOff")
    assert core.read_namespaced_pod("nope", ns).status.phase == "Pending"


def test_deployment_ready_from_real_probes_and_service_dns(core: client.CoreV1Api, apps: client.AppsV1Api,
                                                           kubectl: Kubectl, ns: str) -> None:
    apps.create_namespaced_deployment(ns, web_deployment("web", replicas=2))
    core.create_namespaced_service(ns, {"metadata": {"name": "web"},
                                        "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]}})
    cp = kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    assert cp.returncode == 0, cp.stderr
    dep = apps.read_namespaced_deployment("web", ns)
    assert dep.status.ready_replicas == 2 and dep.status.available_replicas == 2
    pods = core.list_namespaced_pod(ns, label_selector="app=web").items
    assert len(pods) == 2 and all(p.status.pod_ip for p in pods)
    # from another pod: the Service by its short, namespaced and full names; a pod by its IP
    names = ["web", f"web.{ns}", f"web.{ns}.svc.cluster.local", pods[0].status.pod_ip]
    # (busybox-static cannot resolve names: its glibc has no NSS; the python image's glibc can)
    fetch = ("import sys, urllib.request\nfor n in sys.argv[1:]:\n    try: print(urllib.request.urlopen("
             "f'http://{n}:8080/', timeout=5).read().decode().strip())\n    except Exception as e: print('FAIL', n, e)")
    client_pod = busybox_pod("client", "", restart="Never")
    client_pod["spec"]["containers"][0].update(image=PYTHON, command=["python3.11", "-c", fetch, *names])
    core.create_namespaced_pod(ns, client_pod)
    wait_for(lambda: core.read_namespaced_pod("client", ns).status.phase in ("Succeeded", "Failed"), what="client")
    out = core.read_namespaced_pod_log("client", ns)
    assert "FAIL" not in out, out
    assert out.count("hello from web-") == 4
    # a pod that stops answering its probe makes the Deployment unready
    victim = pods[0].metadata.name
    core.delete_namespaced_pod(victim, ns)
    wait_for(lambda: len([p for p in core.list_namespaced_pod(ns, label_selector="app=web").items
                          if p.metadata.name != victim]) == 2, what="replacement pod")
    assert kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s").returncode == 0


def test_statefulset_claims_are_real_storage(core: client.CoreV1Api, apps: client.AppsV1Api, kubectl: Kubectl,
                                             ns: str) -> None:
    core.create_namespaced_secret(ns, {"metadata": {"name": "db"}, "stringData": {"password": "canary-pw-1"}})
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
           "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{
                        "name": "postgres", "image": POSTGRES,
                        "env": [{"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db",
                                                                                             "key": "password"}}}],
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
                        "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "127.0.0.1"]},
                                           "periodSeconds": 1}}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}
    apps.create_namespaced_stateful_set(ns, sts)
    core.create_namespaced_service(ns, {"metadata": {"name": "db"}, "spec": {
        "clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}})
    assert kubectl("rollout", "status", "statefulset/db", "-n", ns, "--timeout=90s").returncode == 0
    pvc = core.read_namespaced_persistent_volume_claim("data-db-0", ns)
    assert pvc.status.phase == "Bound"
    psql = ["psql", "-U", "postgres", "-tAc"]  # the local socket: trust, as the image sets it up
    cp = kubectl("exec", "-n", ns, "db-0", "--", *psql, "create table t(x int); insert into t values (42)")
    assert cp.returncode == 0, cp.stderr
    old_uid = core.read_namespaced_pod("db-0", ns).metadata.uid
    core.delete_namespaced_pod("db-0", ns)
    wait_for(lambda: (p := read_pod(core, ns, "db-0")) is not None and p.metadata.uid != old_uid, what="db-0 recreated")
    wait_for(lambda: pod_ready(core, ns, "db-0"), timeout=60, what="db-0 ready again")
    cp = kubectl("exec", "-n", ns, "db-0", "--", *psql, "select x from t")
    assert cp.stdout.decode().strip() == "42", cp.stderr
    # the pod's own DNS name (hostname.subdomain) from another pod, with the password from the Secret
    client_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pgclient"}, "spec": {
        "restartPolicy": "Never", "containers": [{
            "name": "c", "image": POSTGRES, "command": ["psql", "-h", "db-0.db", "-U", "postgres", "-tAc",
                                                        "select x from t"],
            "env": [{"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}]}}
    core.create_namespaced_pod(ns, client_pod)
    wait_for(lambda: core.read_namespaced_pod("pgclient", ns).status.phase in ("Succeeded", "Failed"), timeout=30,
             what="pgclient")
    assert core.read_namespaced_pod_log("pgclient", ns).strip() == "42"
