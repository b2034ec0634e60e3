"""Jobs run to Complete or Failed, with the real controller's counts and conditions."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from .conftest import BASE, Kubectl, wait_for


def job(name: str, script: str, restart: str = "Never", backoff: int = 6, **spec: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {"restartPolicy": restart, "containers": [{"name": "work", "image": BASE,
                                                                     "command": ["sh", "-c", script]}]}
    if "volumes" in spec:
        pod["volumes"] = spec.pop("volumes")
        pod["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/w"}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": backoff, "template": {"spec": pod}, **spec}}


def conditions(batch: client.BatchV1Api, ns: str, name: str) -> dict[str, Any]:
    st = batch.read_namespaced_job_status(name, ns).status
    return {c.type: c for c in st.conditions or [] if c.status == "True"}


def test_job_runs_to_complete(batch: client.BatchV1Api, core: client.CoreV1Api, kubectl: Kubectl, ns: str) -> None:
    batch.create_namespaced_job(ns, job("migrate", "for i in 1 2 3; do echo step $i; done"))
    cp = kubectl("wait", "--for=condition=complete", "job/migrate", "-n", ns, "--timeout=60s")
    assert cp.returncode == 0, cp.stderr
    st = batch.read_namespaced_job_status("migrate", ns).status
    assert (st.succeeded, st.active or 0, st.failed or 0) == (1, 0, 0)
    assert st.start_time is not None and st.completion_time is not None
    assert set(conditions(batch, ns, "migrate")) == {"SuccessCriteriaMet", "Complete"}
    pods = core.list_namespaced_pod(ns, label_selector="batch.kubernetes.io/job-name=migrate").items
    assert len(pods) == 1 and pods[0].status.phase == "Succeeded"
    assert pods[0].metadata.owner_references[0].kind == "Job"
    cp = kubectl("logs", "job/migrate", "-n", ns)
    assert cp.stdout == b"step 1\nstep 2\nstep 3\n", cp.stderr


def test_job_fails_after_its_backoff_limit(batch: client.BatchV1Api, core: client.CoreV1Api, kubectl: Kubectl,
                                           ns: str) -> None:
    batch.create_namespaced_job(ns, job("broken", "echo no >&2; exit 1", backoff=1))
    wait_for(lambda: "Failed" in conditions(batch, ns, "broken"), timeout=60, what="Failed")
    cond = conditions(batch, ns, "broken")
    assert cond["Failed"].reason == "BackoffLimitExceeded" and "FailureTarget" in cond
    st = batch.read_namespaced_job_status("broken", ns).status
    assert st.failed == 2 and not st.succeeded and not st.active
    pods = core.list_namespaced_pod(ns, label_selector="job-name=broken").items
    assert sorted(p.status.phase for p in pods) == ["Failed", "Failed"]
    cp = kubectl("wait", "--for=condition=failed", "job/broken", "-n", ns, "--timeout=10s")
    assert cp.returncode == 0, cp.stderr


def test_on_failure_restarts_in_place_and_keeps_the_empty_dir(batch: client.BatchV1Api, core: client.CoreV1Api,
                                                              ns: str) -> None:
    script = "n=$(cat /w/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /w/n; echo try $n; [ $n -ge 2 ]"
    batch.create_namespaced_job(ns, job("retry", script, restart="OnFailure", volumes=[
        {"name": "scratch", "emptyDir": {}}]))
    wait_for(lambda: "Complete" in conditions(batch, ns, "retry"), timeout=60, what="Complete")
    pods = core.list_namespaced_pod(ns, label_selector="job-name=retry").items
    assert len(pods) == 1
    assert pods[0].status.container_statuses[0].restart_count == 1
    assert core.read_namespaced_pod_log(pods[0].metadata.name, ns) == "try 2\n"


def test_a_job_template_must_not_restart_always(batch: client.BatchV1Api, ns: str) -> None:
    body = job("bad", "true")
    del body["spec"]["template"]["spec"]["restartPolicy"]
    try:
        batch.create_namespaced_job(ns, body)
    except client.ApiException as exc:
        assert exc.status == 422 and "restartPolicy" in exc.body
    else:
        raise AssertionError("a Job with restartPolicy Always was accepted")
