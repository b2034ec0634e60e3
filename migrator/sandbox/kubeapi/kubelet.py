"""The kubelet of the one node: runs Pods as containers on the node's dockerd and reports their status.

One worker thread per pod (like the kubelet's pod workers) syncs it every `SYNC` seconds: it creates the
pod's sandbox container (the pod IP, on the pod network), runs the init containers one after another,
then the containers, restarts them as `restartPolicy` says (a new container per attempt, the previous
one kept for `logs --previous`, back-off doubling from `restart_backoff` up to 5 minutes), runs readiness
probes (exec, tcpSocket, httpGet) and writes the Pod's status. Volumes: persistentVolumeClaim (a docker
volume per claim, kept until the claim is deleted), emptyDir (a docker volume per pod), configMap and
secret (files written for the pod, mounted read-only), hostPath. A deleted Pod's containers are removed.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from . import errors
from .api import Api
from .fields import now
from .node import GATEWAY, L_ATTEMPT, L_CONTAINER, L_NS, L_POD, L_PVC, L_ROLE, L_UID, NETWORK, Node
from .resources import BY_KEY, POD, PVC

log = logging.getLogger("migrator.sandbox.kubeapi.kubelet")

NODE_NAME = "sandbox-node"
MANAGER = "kubelet"
SYNC = 0.5
MAX_BACKOFF = 300.0
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
CONFIGMAP, SECRET = BY_KEY["/configmaps"], BY_KEY["/secrets"]
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The pod cannot be started as written (CreateContainerConfigError)."""


class Unschedulable(Exception):
    """A claim the pod needs is missing (the scheduler would leave it Pending)."""


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {str(p.get("name")): int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")}


def _expand(text: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


class Kubelet:
    def __init__(self, api: Api, node: Node, root: Path, *, missing_images: str = "fail",
                 restart_backoff: float = 10.0, pause_image: str = "sevensa-sandbox/base:busybox") -> None:
        if missing_images not in ("fail", "simulate"):
            raise ValueError("missing_images must be fail or simulate")
        self.api, self.node, self.root = api, node, root
        self.missing_images = missing_images
        self.restart_backoff = restart_backoff
        self.pause_image = pause_image
        self.gateway = GATEWAY
        self._workers: dict[str, PodWorker] = {}
        self.tearing: set[str] = set()  # pods whose containers are being removed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)

    # -- which pods are ours ----------------------------------------------------------------------------
    def images_present(self, pod_spec: dict[str, Any]) -> bool:
        images = [c.get("image", "") for f in ("initContainers", "containers") for c in pod_spec.get(f) or []]
        return all(self.node.has_image(str(i)) for i in images)

    def claims(self, pod_spec: dict[str, Any], owner_kind: str | None) -> bool:
        """Whether this node runs the pod. With `missing_images=simulate` a workload's pod whose images the
        node lacks is left to the readiness simulator (the rehearsal's platform images cannot exist here)."""
        if self.images_present(pod_spec):
            return True
        return not (self.missing_images == "simulate" and owner_kind in WORKLOAD_KINDS)

    def _owner_kind(self, pod: dict[str, Any]) -> str | None:
        refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")]
        return str(refs[0].get("kind")) if refs else None

    # -- loop ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.gateway = self.node.ensure_network()
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops syncing; the containers keep running (a restarted stand-in adopts them)."""
        self._stop.set()
        self._thread.join(timeout=5)
        for w in list(self._workers.values()):
            w.halt()

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                self.tick()
            except errors.ApiError as exc:
                log.debug("kubelet: %s", exc.message)
            except Exception:
                log.exception("kubelet tick failed")

    def tick(self) -> None:
        live: set[str] = set()
        for pod in self.api.store.select(POD.key):
            uid = pod["metadata"]["uid"]
            if (pod.get("spec") or {}).get("nodeName") not in (None, "", NODE_NAME):
                continue
            live.add(uid)
            if uid in self._workers or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            if not self.claims(pod.get("spec") or {}, self._owner_kind(pod)):
                continue
            w = PodWorker(self, pod)
            self._workers[uid] = w
            w.thread.start()
        for uid in list(self._workers):
            if uid not in live:
                self.tearing.add(uid)
                self._workers.pop(uid).retire()
        self._collect_orphans(live)
        self._collect_claims()

    def _collect_orphans(self, live: set[str]) -> None:
        """Containers of pods that no longer exist (deleted while the stand-in was down, or retired)."""
        for c in self.node.list_pod_containers():
            uid = (c.get("Labels") or {}).get(L_UID, "")
            if uid and uid not in live and uid not in self._workers and uid not in self.tearing:
                self.tearing.add(uid)
                threading.Thread(target=teardown, args=(self, uid), daemon=True).start()

    def claim_storage(self, namespace: str, claim: str, uid: str) -> Path:
        """Where a claim's data lives on the node, as kind's local-path provisioner names it
        (`pvc-<uid>_<namespace>_<claim>`); `storage/by-claim/<namespace>/<claim>` links to the current one
        (what a simulated pod that mounts the claim reads)."""
        directory = self.root / "storage" / f"pvc-{uid}_{namespace}_{claim}"
        link = claim_link(self.root, namespace, claim)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink() or os.readlink(link) != str(directory):
            tmp = link.with_name(link.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(directory)
            os.replace(tmp, link)
        return directory

    def _collect_claims(self) -> None:
        """A deleted claim's volume goes with it (reclaimPolicy Delete), once no container uses it."""
        uids = {p["metadata"]["uid"] for p in self.api.store.select(PVC.key)}
        for vol in self.node.volumes(L_PVC):
            if (vol.get("Labels") or {}).get(L_PVC) not in uids:
                self.node.remove_volume(str(vol["Name"]))


def claim_link(root: Path, namespace: str, claim: str) -> Path:
    """The node's stable path to a claim's storage (a link, made when a pod first mounts the claim)."""
    return root / "storage" / "by-claim" / namespace / claim


def teardown(kubelet: Kubelet, uid: str) -> None:
    """Remove a pod's containers (app and init first, then the sandbox), its emptyDirs and its files."""
    try:
        containers = kubelet.node.list_pod_containers(uid)
        order = sorted(containers, key=lambda c: (c.get("Labels") or {}).get(L_ROLE) == "sandbox")
        for c in order:
            kubelet.node.remove(str(c["Id"]), grace=0 if (c.get("Labels") or {}).get(L_ROLE) == "sandbox" else 2)
        for vol in kubelet.node.volumes(f"{L_UID}={uid}"):
            kubelet.node.remove_volume(str(vol["Name"]))
        shutil.rmtree(kubelet.root / uid, ignore_errors=True)
    except Exception:
        log.exception("teardown of pod %s failed", uid)
    finally:
        kubelet.tearing.discard(uid)


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        self.k = kubelet
        meta = pod["metadata"]
        self.uid, self.ns, self.name = str(meta["uid"]), str(meta["namespace"]), str(meta["name"])
        self.spec: dict[str, Any] = pod.get("spec") or {}
        self._halt = threading.Event()
        self._retired = False
        self.sandbox_pid: int | None = None
        self.pod_ip = ""
        self.started_at = (pod.get("status") or {}).get("startTime") or now()
        self.probes: dict[str, dict[str, Any]] = {}
        self.env_cache: dict[str, dict[str, str]] = {}
        self.thread = threading.Thread(target=self._loop, name=f"pod {self.ns}/{self.name}", daemon=True)

    def halt(self) -> None:
        self._halt.set()

    def retire(self) -> None:
        """The pod was deleted: stop syncing and remove what runs for it."""
        self._retired = True
        self._halt.set()

    def _loop(self) -> None:
        while not self._halt.is_set():
            try:
                if self.sync():
                    break  # terminal
            except errors.ApiError as exc:
                if exc.code == 404:
                    break
                log.debug("pod %s/%s: %s", self.ns, self.name, exc.message)
            except Exception:
                log.exception("pod %s/%s: sync failed", self.ns, self.name)
            self._halt.wait(SYNC)
        if self._retired:
            teardown(self.k, self.uid)

    # -- containers by name -----------------------------------------------------------------------------
    def containers(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """(role, name) -> this pod's containers, newest attempt first."""
        out: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for c in self.k.node.list_pod_containers(self.uid):
            labels = c.get("Labels") or {}
            out.setdefault((labels.get(L_ROLE, ""), labels.get(L_CONTAINER, "")), []).append(c)
        for v in out.values():
            v.sort(key=lambda c: int((c.get("Labels") or {}).get(L_ATTEMPT, "0")), reverse=True)
        return out

    # -- the sync ---------------------------------------------------------------------------------------
    def sync(self) -> bool:
        pod = self.k.api.store.get(POD.key, self.ns, self.name)
        if pod is None or pod["metadata"]["uid"] != self.uid:
            self._retired = True
            return True
        policy = self.spec.get("restartPolicy", "Always")
        found = self.containers()
        status = pod.get("status") or {}
        inits, apps = self.spec.get("initContainers") or [], self.spec.get("containers") or []
        missing = [str(c.get("image")) for c in inits + apps if not self.k.node.has_image(str(c.get("image")))]
        if missing:
            self._write(pod, self._pending_status(status, "ImagePullBackOff",
                        f'Back-off pulling image "{missing[0]}": the stand-in\'s node pulls no images '
                        f'(no registry answers); load it into the node dockerd'))
            return False
        try:
            if not self._ensure_sandbox(pod, found):
                return False
        except Unschedulable as exc:
            self._write(pod, self._unschedulable(status, str(exc)))
            return False
        found = self.containers()
        init_state = self._run_inits(pod, inits, found, policy)
        if init_state == "failed":
            self._write(pod, self._status(pod, found, "Failed", initialized=False))
            self._stop_sandbox(found)
            return True
        if init_state != "done":
            self._write(pod, self._status(pod, self.containers(), "Pending", initialized=False))
            return False
        terminal = self._run_apps(pod, apps, found, policy)
        found = self.containers()
        phase = self._phase(apps, found, policy)
        self._probe(apps, found)
        self._write(pod, self._status(pod, found, phase, initialized=True))
        if phase in ("Succeeded", "Failed") and terminal:
            self._stop_sandbox(found)
            return True
        return False

    def _labels(self, role: str, name: str, attempt: int) -> dict[str, str]:
        return {L_UID: self.uid, L_NS: self.ns, L_POD: self.name, L_CONTAINER: name, L_ROLE: role,
                L_ATTEMPT: str(attempt)}

    def _cname(self, role: str, name: str, attempt: int) -> str:
        return f"k8s_{name if role != 'sandbox' else 'POD'}_{self.name}_{self.ns}_{self.uid[:8]}_{attempt}"

    def _ensure_sandbox(self, pod: dict[str, Any], found: dict[tuple[str, str], list[dict[str, Any]]]) -> bool:
        self._volumes(pod)  # fails early (Unschedulable, ConfigError) before anything is created
        boxes = found.get(("sandbox", "POD")) or []
        if boxes and boxes[0].get("State") == "running":
            if self.sandbox_pid is None or not self.pod_ip:
                info = self.k.node.inspect(str(boxes[0]["Id"])) or {}
                self.sandbox_pid = int((info.get("State") or {}).get("Pid") or 0) or None
                self.pod_ip = str((((info.get("NetworkSettings") or {}).get("Networks") or {}).get(NETWORK) or {})
                                  .get("IPAddress") or "")
            return True
        if boxes:  # the sandbox died: a real kubelet recreates the pod's sandbox and its containers
            for c in [c for v in found.values() for c in v]:
                self.k.node.remove(str(c["Id"]), grace=0)
        if not self.k.node.has_image(self.k.pause_image):
            raise Unschedulable(f"the node has no pause image {self.k.pause_image}")
        spec = self.spec
        hostname = str(spec.get("hostname") or self.name)[:63]
        search = [f"{self.ns}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        cid = self.k.node.create(self._cname("sandbox", "POD", 0), self.k.pause_image,
                                 labels=self._labels("sandbox", "POD", 0), entrypoint=["sleep"],
                                 command=["2147483647"], env={}, working_dir=None, user="0", binds=[],
                                 network=NETWORK, hostname=hostname, dns=[self.k.gateway], dns_search=search)
        self.k.node.start(cid)
        info = self.k.node.inspect(cid) or {}
        self.sandbox_pid = int((info.get("State") or {}).get("Pid") or 0) or None
        self.pod_ip = str((((info.get("NetworkSettings") or {}).get("Networks") or {}).get(NETWORK) or {})
                          .get("IPAddress") or "")
        return True

    def _stop_sandbox(self, found: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        for c in found.get(("sandbox", "POD")) or []:
            if c.get("State") == "running":
                self.k.node.remove(str(c["Id"]), grace=0)

    # -- volumes and environment -----------------------------------------------------------------------------
    def _volumes(self, pod: dict[str, Any]) -> dict[str, str]:
        """volume name -> a docker volume name or a host path, ready to mount."""
        out: dict[str, str] = {}
        for vol in self.spec.get("volumes") or []:
            name = str(vol.get("name"))
            if "persistentVolumeClaim" in vol:
                claim = str((vol["persistentVolumeClaim"] or {}).get("claimName"))
                pvc = self.k.api.store.get(PVC.key, self.ns, claim)
                if pvc is None:
                    raise Unschedulable(f'persistentvolumeclaim "{claim}" not found')
                puid = str(pvc["metadata"]["uid"])
                out[name] = self.k.node.ensure_volume(f"pvc-{puid}", {L_PVC: puid, L_NS: self.ns,
                                                                       "io.sandbox.pvc.name": claim},
                                                      self.k.claim_storage(self.ns, claim, puid))
            elif "emptyDir" in vol:
                out[name] = self.k.node.ensure_volume(f"emptydir-{self.uid[:8]}-{name}", {L_UID: self.uid})
            elif "configMap" in vol or "secret" in vol:
                out[name] = str(self._write_files(name, vol))
            elif "hostPath" in vol:
                out[name] = str((vol["hostPath"] or {}).get("path"))
            else:
                kinds = sorted(k for k in vol if k != "name")
                raise ConfigError(f"volume {name}: type {', '.join(kinds)} is not supported by the stand-in's node")
        return out

    def _write_files(self, name: str, vol: dict[str, Any]) -> Path:
        is_secret = "secret" in vol
        src = vol.get("secret" if is_secret else "configMap") or {}
        ref = str(src.get("secretName" if is_secret else "name"))
        obj = self.k.api.store.get((SECRET if is_secret else CONFIGMAP).key, self.ns, ref)
        if obj is None:
            if src.get("optional"):
                obj = {}
            else:
                raise ConfigError(f'{"secret" if is_secret else "configmap"} "{ref}" not found')
        import base64

        data: dict[str, bytes] = {}
        if is_secret:
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = src.get("items")
        mode = int(src.get("defaultMode", 0o644))
        files = [(i["key"], i.get("path", i["key"]), int(i.get("mode", mode))) for i in items] if items else \
            [(k, k, mode) for k in data]
        where = self.k.root / self.uid / name
        where.mkdir(parents=True, exist_ok=True)
        (self.k.root / self.uid).chmod(0o700)  # Secret values on the node's disk: root only
        for key, rel, fmode in files:
            if key not in data:
                raise ConfigError(f"volume {name}: key {key} not found in {ref}")
            target = where / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[key])
            target.chmod(fmode)
        return where

    def _env(self, c: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for src in c.get("envFrom") or []:
            prefix = str(src.get("prefix") or "")
            for kind, key in (("configMapRef", CONFIGMAP), ("secretRef", SECRET)):
                if kind in src:
                    ref = src[kind] or {}
                    obj = self.k.api.store.get(key.key, self.ns, str(ref.get("name")))
                    if obj is None:
                        if ref.get("optional"):
                            continue
                        raise ConfigError(f'{"secret" if key is SECRET else "configmap"} "{ref.get("name")}" not found')
                    env.update({prefix + k: self._decode(key, v) for k, v in (obj.get("data") or {}).items()})
        for item in c.get("env") or []:
            name = str(item.get("name"))
            if "value" in item:
                env[name] = _expand(str(item.get("value") or ""), env)
                continue
            frm = item.get("valueFrom") or {}
            if "fieldRef" in frm:
                path = str((frm["fieldRef"] or {}).get("fieldPath"))
                env[name] = {"metadata.name": self.name, "metadata.namespace": self.ns, "metadata.uid": self.uid,
                             "spec.nodeName": NODE_NAME, "status.podIP": self.pod_ip,
                             "status.hostIP": self.k.gateway}.get(path, "")
                continue
            for kind, key in (("secretKeyRef", SECRET), ("configMapKeyRef", CONFIGMAP)):
                if kind in frm:
                    ref = frm[kind] or {}
                    obj = self.k.api.store.get(key.key, self.ns, str(ref.get("name")))
                    value = ((obj or {}).get("data") or {}).get(str(ref.get("key")))
                    if value is None:
                        if ref.get("optional"):
                            break
                        what = "secret" if key is SECRET else "configmap"
                        raise ConfigError(f'{what} "{ref.get("name")}" (key {ref.get("key")}) not found')
                    env[name] = self._decode(key, value)
        return env

    @staticmethod
    def _decode(key: Any, value: Any) -> str:
        import base64

        return base64.b64decode(value).decode(errors="replace") if key is SECRET else str(value)

    def _create(self, pod: dict[str, Any], c: dict[str, Any], role: str, attempt: int) -> str:
        vols = self._volumes(pod)
        env = self._env(c)
        binds = []
        for m in c.get("volumeMounts") or []:
            src = vols.get(str(m.get("name")))
            if src is None:
                raise ConfigError(f"container {c.get('name')}: volumeMount {m.get('name')} names no volume")
            if m.get("subPath"):
                if src.startswith("/"):
                    src = str(Path(src) / str(m["subPath"]))
                else:  # a docker volume: its directory on the node (the node is this machine)
                    mountpoint = self.k.node.low.inspect_volume(src)["Mountpoint"]
                    sub = Path(mountpoint) / str(m["subPath"])
                    sub.mkdir(parents=True, exist_ok=True)
                    src = str(sub)
            binds.append(f"{src}:{m['mountPath']}:{'ro' if m.get('readOnly') or src.startswith(str(self.k.root)) else 'rw'}")
        sc = {**(self.spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
        user = None
        if sc.get("runAsUser") is not None:
            user = str(sc["runAsUser"]) + (f":{sc['runAsGroup']}" if sc.get("runAsGroup") is not None else "")
        command = [_expand(str(x), env) for x in c["command"]] if c.get("command") else None
        args = [_expand(str(x), env) for x in c["args"]] if c.get("args") else None
        assert self.sandbox_pid is not None
        boxes = self.containers().get(("sandbox", "POD")) or []
        cid = self.k.node.create(self._cname(role, str(c["name"]), attempt), str(c["image"]),
                                 labels=self._labels(role, str(c["name"]), attempt), entrypoint=command, command=args,
                                 env=env, working_dir=c.get("workingDir"), user=user, binds=binds,
                                 network=f"container:{boxes[0]['Id']}", hostname=None, dns=None, dns_search=None,
                                 stdin_open=bool(c.get("stdin")))
        self.k.node.start(cid)
        return cid

    # -- init containers and containers ---------------------------------------------------------------
    def _run_inits(self, pod: dict[str, Any], inits: list[dict[str, Any]],
                   found: dict[tuple[str, str], list[dict[str, Any]]], policy: str) -> str:
        for c in inits:
            attempts = found.get(("init", str(c["name"]))) or []
            if not attempts:
                self._start_or_config_error(pod, c, "init", 0)
                return "running"
            last = attempts[0]
            if last.get("State") == "running" or last.get("State") == "created":
                return "running"
            code = self._exit_code(last)
            if code == 0:
                continue
            if policy == "Never":
                return "failed"
            if self._backoff_over(last, len(attempts) - 1):
                self._replace(pod, c, "init", attempts)
            return "running"
        return "done"

    def _run_apps(self, pod: dict[str, Any], apps: list[dict[str, Any]],
                  found: dict[tuple[str, str], list[dict[str, Any]]], policy: str) -> bool:
        """Start or restart containers; True when every container is finished for good."""
        finished = True
        for c in apps:
            attempts = found.get(("app", str(c["name"]))) or []
            if not attempts:
                self._start_or_config_error(pod, c, "app", 0)
                finished = False
                continue
            last = attempts[0]
            if last.get("State") in ("running", "created", "restarting"):
                finished = False
                continue
            code = self._exit_code(last)
            if policy == "Always" or (policy == "OnFailure" and code != 0):
                finished = False
                if self._backoff_over(last, len(attempts) - 1):
                    self._replace(pod, c, "app", attempts)
        return finished

    def _start_or_config_error(self, pod: dict[str, Any], c: dict[str, Any], role: str, attempt: int) -> None:
        try:
            self._create(pod, c, role, attempt)
            self.probes.pop(str(c["name"]), None)
        except ConfigError as exc:
            self.probes[str(c["name"])] = {"config_error": str(exc)}

    def _replace(self, pod: dict[str, Any], c: dict[str, Any], role: str, attempts: list[dict[str, Any]]) -> None:
        """A restart: a new container; the previous one is kept (for logs --previous), older ones removed."""
        attempt = int((attempts[0].get("Labels") or {}).get(L_ATTEMPT, "0")) + 1
        for old in attempts[1:]:
            self.k.node.remove(str(old["Id"]), grace=0)
        self._start_or_config_error(pod, c, role, attempt)

    def _exit_code(self, c: dict[str, Any]) -> int:
        info = self.k.node.inspect(str(c["Id"])) or {}
        return int((info.get("State") or {}).get("ExitCode") or 0)

    def _backoff_over(self, last: dict[str, Any], restarts: int) -> bool:
        info = self.k.node.inspect(str(last["Id"])) or {}
        finished = _docker_time((info.get("State") or {}).get("FinishedAt"))
        delay = min(self.k.restart_backoff * (2 ** restarts), MAX_BACKOFF)
        return finished is None or time.time() - finished >= delay

    def _phase(self, apps: list[dict[str, Any]], found: dict[tuple[str, str], list[dict[str, Any]]],
               policy: str) -> str:
        states = []
        for c in apps:
            attempts = found.get(("app", str(c["name"]))) or []
            if not attempts:
                return "Pending"
            states.append((attempts[0].get("State"), self._exit_code(attempts[0])
                           if attempts[0].get("State") == "exited" else None))
        if any(s == "running" for s, _ in states):
            return "Running"
        if all(s == "exited" for s, _ in states):
            if all(code == 0 for _, code in states) and policy != "Always":
                return "Succeeded"
            if policy == "Never":
                return "Failed"
            return "Running"  # restarting
        return "Pending" if not any(s == "exited" for s, _ in states) else "Running"

    # -- probes --------------------------------------------------------------------------------------
    def _probe(self, apps: list[dict[str, Any]], found: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        clock = time.monotonic()
        for c in apps:
            name = str(c["name"])
            attempts = found.get(("app", name)) or []
            st = self.probes.setdefault(name, {})
            running = bool(attempts) and attempts[0].get("State") == "running"
            cid = str(attempts[0]["Id"]) if attempts else ""
            if st.get("cid") != cid:
                st.clear()
                st.update(cid=cid, since=clock, ready=False, ok=0, bad=0, last=None)
            probe = c.get("readinessProbe")
            if not running:
                st["ready"] = False
                continue
            if not probe:
                st["ready"] = True
                continue
            period = float(probe.get("periodSeconds", 10))
            if clock - st["since"] < float(probe.get("initialDelaySeconds", 0)):
                continue
            if st["last"] is not None and clock - st["last"] < period:
                continue
            st["last"] = clock
            if self._run_probe(c, probe, cid):
                st["ok"], st["bad"] = st["ok"] + 1, 0
                if st["ok"] >= int(probe.get("successThreshold", 1)):
                    st["ready"] = True
            else:
                st["ok"], st["bad"] = 0, st["bad"] + 1
                if st["bad"] >= int(probe.get("failureThreshold", 3)) or not st["ready"]:
                    st["ready"] = False

    def _run_probe(self, c: dict[str, Any], probe: dict[str, Any], cid: str) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "exec" in probe:
                ex = self.k.node.exec(cid, [str(x) for x in (probe["exec"] or {}).get("command") or []], stdin=False)
                ex.sock.settimeout(timeout)
                try:
                    while ex.sock.recv(65536):
                        pass
                except TimeoutError:
                    return False
                finally:
                    ex.sock.close()
                return self.k.node.exec_exit_code(ex.id, timeout) == 0
            for kind in ("tcpSocket", "httpGet"):
                if kind in probe:
                    spec = probe[kind] or {}
                    raw = spec.get("port")
                    port = _ports(c).get(str(raw), 0) if isinstance(raw, str) and not raw.isdigit() else int(raw or 0)
                    if kind == "tcpSocket":
                        with socket.create_connection((self.pod_ip, port), timeout=timeout):
                            return True
                    conn = http.client.HTTPConnection(self.pod_ip, port, timeout=timeout)
                    try:
                        conn.request("GET", str(spec.get("path") or "/"),
                                     headers={h["name"]: h["value"] for h in spec.get("httpHeaders") or []})
                        return 200 <= conn.getresponse().status < 400
                    finally:
                        conn.close()
        except (OSError, http.client.HTTPException):
            return False
        return False  # grpc probes are not supported: never ready

    # -- status ----------------------------------------------------------------------------------------
    def _container_status(self, c: dict[str, Any], attempts: list[dict[str, Any]], ready: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": c["name"], "image": c["image"], "imageID": "", "ready": ready,
                                 "restartCount": max(0, len(attempts) - 1) if attempts else 0,
                                 "started": False, "state": {}, "lastState": {}}
        if attempts:
            cur = int((attempts[0].get("Labels") or {}).get(L_ATTEMPT, "0"))
            entry["restartCount"] = cur
        err = (self.probes.get(str(c["name"])) or {}).get("config_error")
        if err and not attempts:
            entry["state"] = {"waiting": {"reason": "CreateContainerConfigError", "message": err}}
            return entry
        if not attempts:
            entry["state"] = {"waiting": {"reason": "ContainerCreating"}}
            return entry
        info = self.k.node.inspect(str(attempts[0]["Id"])) or {}
        entry["containerID"] = f"docker://{info.get('Id', '')}"
        entry["imageID"] = f"docker-pullable://{c['image']}@{info.get('Image', '')}"
        state = info.get("State") or {}
        entry["ready"] = bool(ready and state.get("Running"))
        if state.get("Running"):
            entry["state"] = {"running": {"startedAt": _k8s_time(state.get("StartedAt"))}}
            entry["started"] = True
        else:
            term = _terminated(info)
            if err:
                entry["state"] = {"waiting": {"reason": "CreateContainerConfigError", "message": err}}
                entry["lastState"] = {"terminated": term}
            elif self._will_restart(term["exitCode"]):
                entry["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                  f"back-off restarting failed container={c['name']} pod={self.name}"}}
                entry["lastState"] = {"terminated": term}
            else:
                entry["state"] = {"terminated": term}
        if len(attempts) > 1 and not entry["lastState"]:
            prev = self.k.node.inspect(str(attempts[1]["Id"])) or {}
            entry["lastState"] = {"terminated": _terminated(prev)}
        return entry

    def _will_restart(self, code: int) -> bool:
        policy = self.spec.get("restartPolicy", "Always")
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    def _status(self, pod: dict[str, Any], found: dict[tuple[str, str], list[dict[str, Any]]], phase: str,
                initialized: bool) -> dict[str, Any]:
        old = pod.get("status") or {}
        apps, inits = self.spec.get("containers") or [], self.spec.get("initContainers") or []
        statuses = [self._container_status(c, found.get(("app", str(c["name"]))) or [],
                                           bool((self.probes.get(str(c["name"])) or {}).get("ready")))
                    for c in apps]
        init_statuses = []
        for c in inits:
            attempts = found.get(("init", str(c["name"]))) or []
            s = self._container_status(c, attempts, False)
            if attempts and "terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0:
                s["ready"] = True
            init_statuses.append(s)
        all_ready = initialized and bool(statuses) and all(s["ready"] for s in statuses) and phase == "Running"
        if phase in ("Succeeded", "Failed"):
            all_ready = False
        sandbox_up = bool(self.pod_ip)
        conds = [("PodReadyToStartContainers", sandbox_up and phase not in ("Succeeded", "Failed")),
                 ("Initialized", initialized), ("Ready", all_ready), ("ContainersReady", all_ready),
                 ("PodScheduled", True)]
        status: dict[str, Any] = {
            "phase": phase, "conditions": _conditions(old, conds, [str(c["name"]) for c in apps]),
            "hostIP": self.k.gateway, "hostIPs": [{"ip": self.k.gateway}], "startTime": self.started_at,
            "qosClass": "BestEffort", "containerStatuses": statuses}
        if self.pod_ip:
            status["podIP"], status["podIPs"] = self.pod_ip, [{"ip": self.pod_ip}]
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        return status

    def _pending_status(self, old: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
        apps = self.spec.get("containers") or []
        statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "started": False,
                     "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}, "lastState": {}}
                    for c in apps]
        conds = [("PodReadyToStartContainers", False), ("Initialized", True), ("Ready", False),
                 ("ContainersReady", False), ("PodScheduled", True)]
        return {"phase": "Pending", "conditions": _conditions(old, conds, [str(c["name"]) for c in apps]),
                "hostIP": self.k.gateway, "hostIPs": [{"ip": self.k.gateway}], "startTime": self.started_at,
                "qosClass": "BestEffort", "containerStatuses": statuses}

    def _unschedulable(self, old: dict[str, Any], message: str) -> dict[str, Any]:
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                "lastProbeTime": None}
        prev: dict[str, Any] = next((c for c in old.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
        cond["lastTransitionTime"] = prev.get("lastTransitionTime") if prev.get("status") == "False" else now()
        return {"phase": "Pending", "conditions": [cond], "qosClass": "BestEffort"}

    def _write(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        if pod.get("status") == status:
            return
        meta = {**pod["metadata"], "resourceVersion": ""}
        self.k.api.replace(POD, self.ns, self.name, {**pod, "metadata": meta, "status": status}, manager=MANAGER,
                           subresource="status")


def _conditions(old: dict[str, Any], conds: list[tuple[str, bool]], names: list[str]) -> list[dict[str, Any]]:
    """Pod conditions; a condition keeps its lastTransitionTime until its status changes."""
    before = {c.get("type"): c for c in old.get("conditions") or []}
    out = []
    for kind, ok in conds:
        flag = "True" if ok else "False"
        prev = before.get(kind) or {}
        entry: dict[str, Any] = {"type": kind, "status": flag, "lastProbeTime": None,
                                 "lastTransitionTime": prev.get("lastTransitionTime")
                                 if prev.get("status") == flag and prev.get("lastTransitionTime") else now()}
        if not ok and kind in ("Ready", "ContainersReady"):
            entry.update(reason="ContainersNotReady", message=f"containers with unready status: [{' '.join(names)}]")
        out.append(entry)
    return out


def _docker_time(text: Any) -> float | None:
    import datetime

    if not text or str(text).startswith("0001-"):
        return None
    head = str(text).split(".")[0].rstrip("Z")
    return datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.UTC).timestamp()


def _k8s_time(text: Any) -> str:
    return (str(text).split(".")[0].rstrip("Z") + "Z") if text else now()


def _terminated(info: dict[str, Any]) -> dict[str, Any]:
    state = info.get("State") or {}
    code = int(state.get("ExitCode") or 0)
    reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0 else "Error")
    return {"exitCode": code, "reason": reason, "startedAt": _k8s_time(state.get("StartedAt")),
            "finishedAt": _k8s_time(state.get("FinishedAt")), "containerID": f"docker://{info.get('Id', '')}"}
