"""Readiness simulator: plays the controllers and kubelet nobody runs here.

After `ready_delay`, Deployments, StatefulSets and DaemonSets get Pods (owned by the workload, labels
from the template) and a status. The cluster has one node, `sandbox-node`, so a DaemonSet whose
nodeSelector the node's labels satisfy runs exactly one Pod. A workload named by the failure knob never
becomes ready: its Pods sit in CrashLoopBackOff, BackOff Events are recorded, and a Deployment's
Progressing condition says ProgressDeadlineExceeded with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from typing import Any

from . import errors
from .api import Api
from .fields import now
from .resources import DAEMONSET, DEPLOYMENT, EVENT, INGRESS, POD, PVC, STATEFULSET, Resource

log = logging.getLogger("migrator.sandbox.kubeapi.simulator")

FAIL_ANNOTATION = "sandbox.migrator/fail"
MANAGER = "sandbox-controller"
WORKLOADS = (DEPLOYMENT, STATEFULSET, DAEMONSET)
NODE = "sandbox-node"
# the labels the kubelet puts on its Node; a DaemonSet's nodeSelector is matched against these
NODE_LABELS = {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
               "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}
# what the DaemonSet controller adds to every pod it makes (so they survive node conditions)
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's generateName alphabet
WAITING_REASONS = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
                   "RunContainerError", "OOMKilled")


def _hash(value: Any, n: int = 10) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:n]


def _suffix() -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


def fits_node(template: dict[str, Any]) -> bool:
    """Whether the one node satisfies the pod template's nodeSelector (affinity is not evaluated)."""
    selector = (template.get("spec") or {}).get("nodeSelector") or {}
    return all(NODE_LABELS.get(k) == v for k, v in selector.items())


def split_reason(text: str) -> tuple[str, str]:
    """`"CrashLoopBackOff: db unreachable"` -> ("CrashLoopBackOff", full text)."""
    head = text.split(":", 1)[0].strip()
    return (head if head in WAITING_REASONS else "CrashLoopBackOff"), text.strip()


def is_ready(obj: dict[str, Any]) -> bool:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if obj.get("kind") == "DaemonSet":
        want = int(status.get("desiredNumberScheduled") or 0)
        return (status.get("observedGeneration") == obj["metadata"].get("generation")
                and want > 0 and int(status.get("numberReady") or 0) >= want)
    want = int(spec.get("replicas", 1))
    return (status.get("observedGeneration") == obj["metadata"].get("generation")
            and want > 0 and int(status.get("readyReplicas") or 0) >= want)


class Simulator:
    def __init__(self, api: Api, ready_delay: float = 0.3, failures: dict[str, str] | None = None,
                 ingress_ip: str | None = None, kubelet: Any = None) -> None:
        self.api = api
        # with a node (kubeapi/kubelet.py), pods it claims run for real: their status is the kubelet's
        self.kubelet = kubelet
        self.ready_delay = ready_delay
        self.failures: dict[str, str] = dict(failures or {})
        self.ingress_ip = ingress_ip
        self._pending: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._done: dict[str, tuple[tuple[Any, ...], tuple[int, int]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubeapi-simulator", daemon=True)

    # -- the knob ------------------------------------------------------------------------------------
    def set_failure(self, namespace: str, name: str, reason: str | None) -> None:
        """Runtime knob for tests: `reason=None` clears it. Keys are `ns/name` (any workload kind)."""
        if reason is None:
            self.failures.pop(f"{namespace}/{name}", None)
        else:
            self.failures[f"{namespace}/{name}"] = reason

    def failure_for(self, obj: dict[str, Any]) -> str | None:
        meta = obj.get("metadata") or {}
        annotated = (meta.get("annotations") or {}).get(FAIL_ANNOTATION)
        if annotated:
            return str(annotated)
        kind = str(obj.get("kind", "")).lower()
        ns, name = meta.get("namespace"), meta.get("name")
        return self.failures.get(f"{ns}/{kind}/{name}") or self.failures.get(f"{ns}/{name}")

    def warnings(self, objs: list[dict[str, Any]]) -> list[str]:
        out = []
        for obj in objs:
            if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet"):
                reason = self.failure_for(obj)
                if reason:
                    meta = obj["metadata"]
                    out.append(f"{obj['kind'].lower()}/{meta['name']} in namespace {meta.get('namespace')} "
                               f"will not become ready: {reason}")
        return out[:20]

    # -- loop ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.05):  # bounded by stop()
            try:
                self.tick()
            except errors.ApiError as exc:  # raced with a client write; the next tick retries
                log.debug("simulator: %s", exc.message)
            except Exception:
                log.exception("simulator tick failed")

    def tick(self) -> None:
        clock = time.monotonic()
        seen: set[str] = set()
        owned = self._owned_pod_counts()
        for res in WORKLOADS:
            for obj in self.api.store.select(res.key):
                meta = obj["metadata"]
                wid = f"{res.kind}/{meta['namespace']}/{meta['name']}"
                seen.add(wid)
                sig = (meta["uid"], meta.get("generation"), (obj.get("spec") or {}).get("replicas", 1),
                       self.failure_for(obj))
                if self._done.get(wid) == (sig, owned.get(meta["uid"], (0, 0))):
                    continue
                pending = self._pending.get(wid)
                if pending is None or pending[0] != sig:
                    self._pending[wid] = (sig, clock)  # the delay restarts on every change
                    continue
                if clock - pending[1] < self.ready_delay:
                    continue
                self._reconcile(res, obj)
                self._done[wid] = (sig, self._owned_pod_counts().get(meta["uid"], (0, 0)))
                self._pending.pop(wid, None)
        for wid in set(self._done) - seen:
            self._done.pop(wid, None)
        self._bind_claims()
        self._ingress_status()

    def _owned_pod_counts(self) -> dict[str, tuple[int, int]]:
        """owner uid -> (pods, ready pods): a pod that turns ready or unready re-runs the reconcile."""
        counts: dict[str, tuple[int, int]] = {}
        with self.api.store.lock:
            for pod in self.api.store.objects.get(POD.key, {}).values():
                ready = int(_pod_ready(pod))
                for ref in pod["metadata"].get("ownerReferences") or []:
                    n, r = counts.get(ref.get("uid", ""), (0, 0))
                    counts[ref.get("uid", "")] = (n + 1, r + ready)
        return counts

    def _real(self, template: dict[str, Any], kind: str) -> bool:
        return self.kubelet is not None and bool(self.kubelet.claims(template.get("spec") or {}, kind))

    def _ready_pods(self, owner: dict[str, Any]) -> int:
        uid = owner["metadata"]["uid"]
        return sum(1 for p in self.api.store.select(POD.key, owner["metadata"]["namespace"])
                   if _pod_ready(p) and any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or []))

    # -- workloads -------------------------------------------------------------------------------------
    def _reconcile(self, res: Resource, obj: dict[str, Any]) -> None:
        if res is DAEMONSET:
            self._reconcile_daemonset(obj)
            return
        meta, spec = obj["metadata"], obj.get("spec") or {}
        ns, name = meta["namespace"], meta["name"]
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        revision = _hash(template)
        failure = self.failure_for(obj)
        real = self._real(template, res.kind)
        hash_label = "pod-template-hash" if res is DEPLOYMENT else "controller-revision-hash"
        if real and res is STATEFULSET:
            self._claims_for(obj, replicas)
        pods = [p for p in self.api.store.select(POD.key, ns)
                if any(r.get("uid") == meta["uid"] for r in p["metadata"].get("ownerReferences") or [])]
        keep: list[str] = []
        for pod in pods:
            current = (pod["metadata"].get("labels") or {}).get(hash_label)
            if current == (revision if res is DEPLOYMENT else f"{name}-{revision}") and len(keep) < replicas \
                    and (res is DEPLOYMENT or pod["metadata"]["name"] in {f"{name}-{i}" for i in range(replicas)}):
                keep.append(pod["metadata"]["name"])
            else:
                self.api.delete(POD, ns, pod["metadata"]["name"])
        if res is DEPLOYMENT:
            names = keep + [f"{name}-{revision}-{secrets.token_hex(3)[:5]}" for _ in range(replicas - len(keep))]
        else:
            names = [f"{name}-{i}" for i in range(replicas)]
        for i, pod_name in enumerate(names):
            self._write_pod(res, obj, pod_name, i, revision, hash_label, failure)
        self._write_status(res, obj, replicas, revision, failure, self._ready_pods(obj) if real else None)

    def _reconcile_daemonset(self, obj: dict[str, Any]) -> None:
        """One node: one pod when the template fits it, none otherwise. RollingUpdate replaces a pod of an
        older template; OnDelete keeps it (not updated) until someone deletes it."""
        meta, spec = obj["metadata"], obj.get("spec") or {}
        ns, name = meta["namespace"], meta["name"]
        template = spec.get("template") or {}
        revision = _hash(template)
        failure = self.failure_for(obj)
        desired = 1 if fits_node(template) else 0
        real = self._real(template, DAEMONSET.kind)
        on_delete = (spec.get("updateStrategy") or {}).get("type") == "OnDelete"
        hash_label = "controller-revision-hash"
        kept: dict[str, Any] | None = None
        for pod in self.api.store.select(POD.key, ns):
            if not any(r.get("uid") == meta["uid"] for r in pod["metadata"].get("ownerReferences") or []):
                continue
            current = (pod["metadata"].get("labels") or {}).get(hash_label)
            if desired and kept is None and (current == revision or on_delete):
                kept = pod
            else:
                self.api.delete(POD, ns, pod["metadata"]["name"])
        updated = 0
        if desired:
            pod_name = kept["metadata"]["name"] if kept else f"{name}-{_suffix()}"
            self._write_pod(DAEMONSET, obj, pod_name, 0, revision, hash_label, failure)
            updated = 1 if kept is None or (kept["metadata"].get("labels") or {}).get(hash_label) == revision else 0
        ready = self._ready_pods(obj) if real else 0 if failure else desired
        status: dict[str, Any] = {"observedGeneration": meta.get("generation", 1), "desiredNumberScheduled": desired,
                                  "currentNumberScheduled": desired, "numberMisscheduled": 0, "numberReady": ready}
        # the API omits these when 0
        if updated:
            status["updatedNumberScheduled"] = updated
        if ready:
            status["numberAvailable"] = ready
        if desired - ready:
            status["numberUnavailable"] = desired - ready
        self.api.replace(DAEMONSET, ns, name, {**obj, "status": status, "metadata": {**meta, "resourceVersion": ""}},
                         manager=MANAGER, subresource="status")
        if failure and desired:
            self._event(ns, DAEMONSET.kind, DAEMONSET.api_version, name, meta["uid"], failure,
                        f"{DAEMONSET.kind} {name} has no ready pods: {failure}")

    def _write_pod(self, res: Resource, owner: dict[str, Any], pod_name: str, index: int, revision: str,
                   hash_label: str, failure: str | None) -> None:
        ns = owner["metadata"]["namespace"]
        template = (owner.get("spec") or {}).get("template") or {}
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        pod_spec: dict[str, Any] = {**(template.get("spec") or {}), "nodeName": NODE}
        if res is DEPLOYMENT:
            labels[hash_label] = revision
        elif res is DAEMONSET:
            labels[hash_label] = revision
            labels["pod-template-generation"] = str(owner["metadata"].get("generation", 1))
            tolerations = list(pod_spec.get("tolerations") or [])
            pod_spec["tolerations"] = tolerations + [t for t in DAEMON_TOLERATIONS if t not in tolerations]
            # the controller pins each pod to its node by replacing the required node affinity terms
            affinity = dict(pod_spec.get("affinity") or {})
            affinity["nodeAffinity"] = {**(affinity.get("nodeAffinity") or {}),
                                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                                            {"matchFields": [{"key": "metadata.name", "operator": "In",
                                                              "values": [NODE]}]}]}}
            pod_spec["affinity"] = affinity
        else:
            labels[hash_label] = f"{owner['metadata']['name']}-{revision}"
            labels["statefulset.kubernetes.io/pod-name"] = pod_name
        real = self._real(template, res.kind)
        if real and res is STATEFULSET:
            # the StatefulSet controller: stable hostname and subdomain, one claim per template and ordinal
            pod_spec["hostname"] = pod_name
            if (owner.get("spec") or {}).get("serviceName"):
                pod_spec["subdomain"] = owner["spec"]["serviceName"]
            volumes = [v for v in pod_spec.get("volumes") or []]
            for tmpl in (owner.get("spec") or {}).get("volumeClaimTemplates") or []:
                tname = tmpl["metadata"]["name"]
                volumes = [v for v in volumes if v.get("name") != tname]
                volumes.append({"name": tname, "persistentVolumeClaim": {"claimName": f"{tname}-{pod_name}"}})
            if volumes:
                pod_spec["volumes"] = volumes
        existing = self.api.store.get(POD.key, ns, pod_name)
        if existing is None:
            pod: dict[str, Any] = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                             "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                             "ownerReferences": [{"apiVersion": res.api_version, "kind": res.kind,
                                                  "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                                                  "controller": True, "blockOwnerDeletion": True}]},
                "spec": pod_spec,
            }
            if not pod["metadata"]["annotations"]:
                del pod["metadata"]["annotations"]
            existing = self.api.create(POD, ns, pod, manager=MANAGER)
        if real:
            return  # the kubelet runs it and writes its status
        ip = f"10.244.{(index // 250) % 250}.{_ip_octet(pod_name)}"
        existing["status"] = self._pod_status(existing, ip, failure)
        self.api.replace(POD, ns, pod_name, {**existing, "metadata": {**existing["metadata"], "resourceVersion": ""}},
                         manager=MANAGER, subresource="status")
        if failure:
            self._event(ns, "Pod", "v1", pod_name, existing["metadata"]["uid"], failure,
                        f"Back-off restarting failed container in pod {pod_name}: {failure}")

    def _pod_status(self, pod: dict[str, Any], ip: str, failure: str | None) -> dict[str, Any]:
        stamp = now()
        started = (pod.get("status") or {}).get("startTime") or stamp
        containers = (pod.get("spec") or {}).get("containers") or []
        ready = failure is None
        statuses = []
        for c in containers:
            entry: dict[str, Any] = {"name": c.get("name"), "image": c.get("image"), "imageID": "",
                                     "containerID": f"containerd://{_hash([pod['metadata']['uid'], c.get('name')], 32)}",
                                     "ready": ready, "started": ready}
            if failure:
                reason, text = split_reason(failure)
                entry.update(restartCount=4, state={"waiting": {
                    "reason": reason,
                    "message": f"back-off 40s restarting failed container={c.get('name')} "
                               f"pod={pod['metadata']['name']}: {text}"}},
                    lastState={"terminated": {"exitCode": 1, "reason": "Error", "message": text,
                                              "startedAt": started, "finishedAt": stamp}})
            else:
                entry.update(restartCount=0, state={"running": {"startedAt": started}}, lastState={})
            statuses.append(entry)
        flag = "True" if ready else "False"
        conditions = [{"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": stamp}
                      for t, s in (("PodReadyToStartContainers", "True"), ("Initialized", "True"), ("Ready", flag),
                                   ("ContainersReady", flag), ("PodScheduled", "True"))]
        if not ready:
            names = ", ".join(str(c.get("name")) for c in containers)
            for cond in conditions:
                if cond["status"] == "False":
                    cond.update(reason="ContainersNotReady", message=f"containers with unready status: [{names}]")
        return {"phase": "Running", "conditions": conditions, "hostIP": "10.0.0.10", "hostIPs": [{"ip": "10.0.0.10"}],
                "podIP": ip, "podIPs": [{"ip": ip}], "startTime": started, "qosClass": "BestEffort",
                "containerStatuses": statuses}

    def _claims_for(self, sts: dict[str, Any], replicas: int) -> None:
        """The StatefulSet controller's claims `<template>-<sts>-<ordinal>`, kept when the set shrinks or goes
        (persistentVolumeClaimRetentionPolicy Retain, the default)."""
        meta = sts["metadata"]
        for tmpl in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
            for i in range(replicas):
                name = f"{tmpl['metadata']['name']}-{meta['name']}-{i}"
                if self.api.store.get(PVC.key, meta["namespace"], name) is None:
                    labels = dict(((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
                    self.api.create(PVC, meta["namespace"], {
                        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels},
                        "spec": dict(tmpl.get("spec") or {})}, manager=MANAGER)

    def _write_status(self, res: Resource, obj: dict[str, Any], replicas: int, revision: str,
                      failure: str | None, real_ready: int | None = None) -> None:
        meta = obj["metadata"]
        ready = (0 if failure else replicas) if real_ready is None else min(real_ready, replicas)
        if real_ready is not None and ready < replicas and not failure:
            failure = None  # real pods that are not ready yet: progressing, not failed
        stamp = now()
        status: dict[str, Any] = {"observedGeneration": meta.get("generation", 1), "replicas": replicas,
                                  "updatedReplicas": replicas, "availableReplicas": ready}
        if ready:
            status["readyReplicas"] = ready
        if res is DEPLOYMENT:
            rs = f"{meta['name']}-{revision}"
            if replicas - ready:
                status["unavailableReplicas"] = replicas - ready
            if real_ready is not None and ready < replicas:
                available = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
                progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs}" is progressing.')
            elif failure:
                available = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
                progressing = ("False", "ProgressDeadlineExceeded",
                               f'ReplicaSet "{rs}" has timed out progressing. {failure}')
            else:
                available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
                progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{rs}" has successfully progressed.')
            status["conditions"] = [
                {"type": t, "status": s, "reason": r, "message": m, "lastUpdateTime": stamp,
                 "lastTransitionTime": stamp}
                for t, (s, r, m) in (("Available", available), ("Progressing", progressing))]
        else:
            rev = f"{meta['name']}-{revision}"
            status.update(currentReplicas=replicas, currentRevision=rev, updateRevision=rev, collisionCount=0)
        self.api.replace(res, meta["namespace"], meta["name"],
                         {**obj, "status": status, "metadata": {**meta, "resourceVersion": ""}},
                         manager=MANAGER, subresource="status")
        if failure:
            self._event(meta["namespace"], res.kind, res.api_version, meta["name"], meta["uid"], failure,
                        f"{res.kind} {meta['name']} has no ready pods: {failure}")

    def _event(self, ns: str, kind: str, api_version: str, name: str, uid: str, failure: str, message: str) -> None:
        stamp = now()
        self.api.create(EVENT, ns, {
            "metadata": {"name": f"{name}.{secrets.token_hex(8)}", "namespace": ns},
            "involvedObject": {"kind": kind, "namespace": ns, "name": name, "uid": uid, "apiVersion": api_version},
            "reason": "BackOff", "message": message, "type": "Warning", "count": 1,
            "source": {"component": "kubelet", "host": "sandbox-node"},
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "reportingComponent": "kubelet", "reportingInstance": "sandbox-node",
        }, manager=MANAGER)

    # -- claims and ingresses ---------------------------------------------------------------------------
    def _bind_claims(self) -> None:
        for pvc in self.api.store.select(PVC.key):
            if (pvc.get("status") or {}).get("phase") != "Pending":
                continue
            spec = pvc.get("spec") or {}
            storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
            status = {"phase": "Bound", "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                      "capacity": {"storage": storage}}
            meta = pvc["metadata"]
            self.api.replace(PVC, meta["namespace"], meta["name"],
                             {**pvc, "status": status, "metadata": {**meta, "resourceVersion": ""}},
                             manager=MANAGER, subresource="status")

    def _ingress_status(self) -> None:
        if not self.ingress_ip:
            return
        want = {"loadBalancer": {"ingress": [{"ip": self.ingress_ip}]}}
        for ing in self.api.store.select(INGRESS.key):
            if ing.get("status") != want:
                meta = ing["metadata"]
                self.api.replace(INGRESS, meta["namespace"], meta["name"],
                                 {**ing, "status": want, "metadata": {**meta, "resourceVersion": ""}},
                                 manager=MANAGER, subresource="status")


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _ip_octet(name: str) -> int:
    return int(_hash(name, 4), 16) % 250 + 2
