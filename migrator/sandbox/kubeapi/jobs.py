"""The Job controller (batch/v1): pods for a Job until `completions` succeed or `backoffLimit` is passed.

Pods are named `<job>-<5 chars>` with the controller's labels (`batch.kubernetes.io/controller-uid`,
`batch.kubernetes.io/job-name` and the legacy `controller-uid`, `job-name`) and an owner reference. A
failed pod (restartPolicy Never) counts against backoffLimit and is replaced after a back-off that doubles
from `backoff`; with OnFailure the kubelet restarts the container in place and the pod's restarts count.
The status carries active, ready, succeeded, failed, startTime, completionTime and the conditions a real
controller writes: SuccessCriteriaMet then Complete, or FailureTarget then Failed (BackoffLimitExceeded,
DeadlineExceeded for activeDeadlineSeconds).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

from . import errors
from .api import Api
from .fields import now
from .resources import BY_KEY, POD

log = logging.getLogger("migrator.sandbox.kubeapi.jobs")

JOB = BY_KEY["batch/jobs"]
MANAGER = "job-controller"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def job_labels(job: dict[str, Any]) -> dict[str, str]:
    meta = job["metadata"]
    return {"batch.kubernetes.io/controller-uid": meta["uid"], "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": meta["uid"], "job-name": meta["name"]}


def defaults(obj: dict[str, Any]) -> None:
    """What the API server fills in on a Job (the selector and template labels need the uid: see `finish`)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")


def finish(job: dict[str, Any]) -> None:
    """The generated selector and template labels (a new Job has its uid by now)."""
    spec = job.get("spec") or {}
    if spec.get("manualSelector"):
        return
    labels = job_labels(job)
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}}
    tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), **labels}


class JobController:
    def __init__(self, api: Api, backoff: float = 10.0) -> None:
        self.api = api
        self.backoff = backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-controller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                for job in self.api.store.select(JOB.key):
                    self.sync(job)
            except errors.ApiError as exc:  # raced with a client write; the next tick retries
                log.debug("job controller: %s", exc.message)
            except Exception:
                log.exception("job controller tick failed")

    def sync(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        status = dict(job.get("status") or {})
        conds = {c.get("type"): c for c in status.get("conditions") or []}
        if any(conds.get(t, {}).get("status") == "True" for t in ("Complete", "Failed")):
            return
        ns = meta["namespace"]
        pods = [p for p in self.api.store.select(POD.key, ns)
                if any(r.get("uid") == meta["uid"] for r in p["metadata"].get("ownerReferences") or [])]
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        succeeded = phases.count("Succeeded")
        failed = phases.count("Failed")
        retries = failed + sum(_restarts(p) for p in pods)  # OnFailure restarts count against backoffLimit
        active = [p for p, ph in zip(pods, phases, strict=True) if ph not in ("Succeeded", "Failed")]
        ready = sum(1 for p in active if _ready(p))
        completions = int(spec.get("completions", 1) or 1)
        parallelism = int(spec.get("parallelism", 1) or 1)
        limit = int(spec.get("backoffLimit", 6))
        stamp = now()
        new: dict[str, Any] = {"startTime": status.get("startTime") or stamp, "active": len(active),
                               "ready": ready, "succeeded": succeeded, "failed": failed, "terminating": 0,
                               "uncountedTerminatedPods": {}}
        conditions: list[dict[str, Any]] = []
        deadline = spec.get("activeDeadlineSeconds")
        started = _parse(new["startTime"])
        if succeeded >= completions:
            conditions = [_cond("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                          _cond("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]
            new["completionTime"] = stamp
        elif retries > limit:
            conditions = [_cond("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                          _cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
        elif deadline is not None and started is not None and time.time() - started > float(deadline):
            conditions = [_cond("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline"),
                          _cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]
        if conditions:
            for p in active:
                self.api.delete(POD, ns, p["metadata"]["name"])
            new["active"], new["ready"] = 0, 0
            new["conditions"] = conditions
            new["terminating"] = len(active)
        elif not spec.get("suspend"):
            want = min(parallelism, completions - succeeded) - len(active)
            last_fail = max((_parse(_finished(p)) or 0.0 for p in pods if (p.get("status") or {}).get("phase") == "Failed"),
                            default=0.0)
            delay = min(self.backoff * (2 ** max(0, phases.count("Failed") - 1)), 360.0)
            if want > 0 and (not phases.count("Failed") or time.time() - last_fail >= delay):
                for _ in range(want):
                    self._create_pod(job)
                new["active"] = len(active) + want
        if status.get("conditions") and not conditions:
            new["conditions"] = status["conditions"]
        if all(status.get(k) == v for k, v in new.items()) and set(status) <= set(new):
            return
        self.api.replace(JOB, ns, meta["name"], {**job, "status": new, "metadata": {**meta, "resourceVersion": ""}},
                         manager=MANAGER, subresource="status")

    def _create_pod(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        template = spec.get("template") or {}
        tmeta = template.get("metadata") or {}
        name = f"{meta['name']}-{''.join(secrets.choice(_ALPHABET) for _ in range(5))}"
        pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": meta["namespace"],
                            "labels": {**(tmeta.get("labels") or {}), **job_labels(job)},
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]},
               "spec": dict(template.get("spec") or {})}
        if tmeta.get("annotations"):
            pod["metadata"]["annotations"] = dict(tmeta["annotations"])
        self.api.create(POD, meta["namespace"], pod, manager=MANAGER)


def _cond(kind: str, reason: str, message: str) -> dict[str, Any]:
    stamp = now()
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastProbeTime": stamp,
            "lastTransitionTime": stamp}


def _restarts(pod: dict[str, Any]) -> int:
    return sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _finished(pod: dict[str, Any]) -> str | None:
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (c.get("state") or {}).get("terminated")
        if term:
            return str(term.get("finishedAt"))
    return None


def _parse(stamp: str | None) -> float | None:
    import datetime

    if not stamp:
        return None
    try:
        return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return None
