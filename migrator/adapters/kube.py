"""The cluster adapter: the official kubernetes client, with the few verbs the migrator needs.

Objects travel as plain dicts (what the manifests are), over raw API calls: server-side apply is a PATCH
with `application/apply-patch+yaml` and `fieldManager=migrator`, which needs no discovery round trips and
works for every kind in `KINDS`. TLS is whatever the kubeconfig says (verified unless it sets
insecure-skip-tls-verify). `kubernetes` is imported inside methods: step modules import this lazily.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from migrator.adapters.lazy import lazy
from migrator.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    import kubernetes
    import kubernetes.stream
    import urllib3

    from migrator.runbook.environment import TargetConfig
else:
    kubernetes = lazy("kubernetes")
    urllib3 = lazy("urllib3")

FIELD_MANAGER = "migrator"
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read: every call is bounded


@dataclass(frozen=True)
class Kind:
    api_version: str
    plural: str
    namespaced: bool

    def base(self) -> str:
        return f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"


KINDS: dict[str, Kind] = {
    "Namespace": Kind("v1", "namespaces", False),
    "ServiceAccount": Kind("v1", "serviceaccounts", True),
    "ConfigMap": Kind("v1", "configmaps", True),
    "Secret": Kind("v1", "secrets", True),
    "Service": Kind("v1", "services", True),
    "PersistentVolumeClaim": Kind("v1", "persistentvolumeclaims", True),
    "Pod": Kind("v1", "pods", True),
    "Event": Kind("v1", "events", True),
    "Deployment": Kind("apps/v1", "deployments", True),
    "StatefulSet": Kind("apps/v1", "statefulsets", True),
    "DaemonSet": Kind("apps/v1", "daemonsets", True),
    "Job": Kind("batch/v1", "jobs", True),
    "Ingress": Kind("networking.k8s.io/v1", "ingresses", True),
    "NetworkPolicy": Kind("networking.k8s.io/v1", "networkpolicies", True),
    "Role": Kind("rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": Kind("rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ClusterRole": Kind("rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": Kind("rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "StorageClass": Kind("storage.k8s.io/v1", "storageclasses", False),
    "CustomResourceDefinition": Kind("apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    # ArgoCD's (gitops.handoff)
    "Application": Kind("argoproj.io/v1alpha1", "applications", True),
    # Velero's (backup.create with backend: velero; the sevensa-infra chart's Schedule and location)
    "Backup": Kind("velero.io/v1", "backups", True),
    "DeleteBackupRequest": Kind("velero.io/v1", "deletebackuprequests", True),
    "Schedule": Kind("velero.io/v1", "schedules", True),
    "BackupStorageLocation": Kind("velero.io/v1", "backupstoragelocations", True),
}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def kind_of(kind: str) -> Kind:
    if kind not in KINDS:
        raise PermanentError(f"kind {kind} is not one the migrator applies (known: {', '.join(sorted(KINDS))})")
    return KINDS[kind]


@dataclass(frozen=True)
class Ref:
    """Where an object lives: enough to get, delete or restore it (what the state records)."""

    kind: str
    name: str
    namespace: str | None = None

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Ref:
        meta = obj.get("metadata") or {}
        return cls(str(obj.get("kind")), str(meta.get("name")),
                   meta.get("namespace") if kind_of(str(obj.get("kind"))).namespaced else None)

    def path(self) -> str:
        k = kind_of(self.kind)
        if k.namespaced and not self.namespace:
            raise PermanentError(f"{self.kind} {self.name}: metadata.namespace is required")
        ns = f"/namespaces/{quote(self.namespace or '', safe='')}" if k.namespaced else ""
        return f"{k.base()}{ns}/{k.plural}/{quote(self.name, safe='')}"

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


class ApiError(PermanentError):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def kubeconfig_files(target: TargetConfig | None, base_dir: Path) -> str:
    """The runbook's kubeconfig (relative to the runbook), else $KUBECONFIG, else ~/.kube/config."""
    if target is not None and target.kubeconfig:
        path = Path(os.path.expanduser(target.kubeconfig))
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise PermanentError(f"environment.target.kubeconfig: {path} does not exist")
        return str(path)
    env = os.environ.get("KUBECONFIG")
    if env:
        return env  # may list several files (':'-separated); the client merges them
    path = Path.home() / ".kube" / "config"
    if not path.is_file():
        raise PermanentError("no kubeconfig: set environment.target.kubeconfig in the runbook, or KUBECONFIG")
    return str(path)


class KubeCluster:
    """One API client for a run (share it through `ctx.resource("kube", ...)`)."""

    def __init__(self, target: TargetConfig | None, base_dir: Path) -> None:
        config = kubernetes.config
        self.kubeconfig = kubeconfig_files(target, base_dir)
        self.context = target.context if target else None
        try:
            # Loads TLS (CA, client certs, insecure-skip-tls-verify) and auth as the kubeconfig says.
            self.api = config.new_client_from_config(config_file=self.kubeconfig, context=self.context,
                                                     persist_config=False)
        except config.ConfigException as exc:
            raise PermanentError(f"kubeconfig {self.kubeconfig}: {exc}") from None
        self.api.user_agent = "migrator"
        if self.context is None:
            try:
                _, active = config.list_kube_config_contexts(config_file=self.kubeconfig)
                self.context = str(active.get("name")) if active else None
            except config.ConfigException:
                pass
        self.server = str(self.api.configuration.host)

    def close(self) -> None:
        self.api.close()

    def describe(self) -> str:
        return f"{self.server} (context {self.context or '?'})"

    # -- raw requests ----------------------------------------------------------------------------------
    def request(self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: Any = None,
                content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        """(status, decoded JSON). Connection trouble and 5xx/429 are TemporaryError; the rest is returned."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        # JSON bodies go as dicts (the client serialises them); apply-patch YAML as JSON text, which is YAML.
        data = json.dumps(body) if body is not None and "yaml" in content_type else body
        try:
            req = self.api.param_serialize(method, path, query_params=query or [], header_params=headers,
                                           body=data, auth_settings=["BearerToken"])
            resp = self.api.call_api(*req, _request_timeout=REQUEST_TIMEOUT)
            raw = resp.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TemporaryError(f"cannot reach the Kubernetes API at {self.server}: {exc.__class__.__name__}") from None
        except Exception as exc:  # ApiException(status=0) for TLS failures and the like
            if exc.__class__.__name__ == "ApiException":
                raise PermanentError(f"Kubernetes API at {self.server}: {getattr(exc, 'reason', exc)}") from None
            raise
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            doc = {"message": raw[:200].decode(errors="replace")}
        status = int(resp.status)
        if status >= 500 or status == 429:
            raise TemporaryError(f"Kubernetes API {method} {path}: {status} {doc.get('message', '')}".strip())
        if status in (401, 403):
            raise PermanentError(f"Kubernetes API {method} {path}: {status} {doc.get('reason', '')}: "
                                 f"{doc.get('message', '')} (check the kubeconfig's credentials and RBAC)")
        return status, doc if isinstance(doc, dict) else {}

    @staticmethod
    def _fail(what: str, status: int, doc: dict[str, Any]) -> ApiError:
        return ApiError(status, str(doc.get("reason", "")), f"{what}: {doc.get('message') or status}")

    # -- verbs -----------------------------------------------------------------------------------------
    def get(self, ref: Ref) -> dict[str, Any] | None:
        status, doc = self.request("GET", ref.path())
        if status == 404:
            return None
        if status != 200:
            raise self._fail(f"get {ref}", status, doc)
        return doc

    def list_objects(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        k = kind_of(kind)
        ns = f"/namespaces/{quote(namespace, safe='')}" if k.namespaced and namespace else ""
        query = [(n, v) for n, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v]
        status, doc = self.request("GET", f"{k.base()}{ns}/{k.plural}", query)
        if status == 404:
            return []
        if status != 200:
            raise self._fail(f"list {kind}", status, doc)
        return list(doc.get("items") or [])

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False, force: bool = False) -> dict[str, Any]:
        """Server-side apply as field manager `migrator`; a conflict names the other manager's fields."""
        ref = Ref.of(obj)
        query = [("fieldManager", FIELD_MANAGER), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        status, doc = self.request("PATCH", ref.path(), query, obj, "application/apply-patch+yaml")
        if status == 409:
            raise ApiError(409, "Conflict", f"apply {ref}: {doc.get('message')} — another field manager owns these "
                                            "fields; set `force_conflicts: true` on the step to take them over")
        if status == 404 and (doc.get("details") or {}).get("kind") == "namespaces":
            raise ApiError(404, "NotFound", f"apply {ref}: namespace {ref.namespace} does not exist")
        if status == 404:
            raise ApiError(404, "NotFound", f"apply {ref}: the API server at {self.server} does not serve "
                                            f"{ref.kind} ({kind_of(ref.kind).api_version})")
        if status not in (200, 201):
            raise self._fail(f"apply {ref}", status, doc)
        return doc

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT (used by rollback to restore a prior object; resourceVersion taken from the live one)."""
        ref = Ref.of(obj)
        live = self.get(ref)
        if live is None:
            status, doc = self.request("POST", ref.path().rsplit("/", 1)[0], None, obj)
        else:
            body = {**obj, "metadata": {**obj.get("metadata", {}),
                                        "resourceVersion": live["metadata"].get("resourceVersion")}}
            status, doc = self.request("PUT", ref.path(), None, body)
        if status not in (200, 201):
            raise self._fail(f"restore {ref}", status, doc)
        return doc

    def delete(self, ref: Ref) -> bool:
        """Delete in the background (dependents too); False if it was not there."""
        status, doc = self.request("DELETE", ref.path(), None, {"propagationPolicy": "Background"})
        if status == 404:
            return False
        if status not in (200, 202):
            raise self._fail(f"delete {ref}", status, doc)
        return True

    # -- rollout ---------------------------------------------------------------------------------------
    def rollout_problem(self, obj: dict[str, Any]) -> str | None:
        """None when the workload is rolled out (kubectl's rules), else why not, with pods and events."""
        ref = Ref.of(obj)
        live = self.get(ref)
        if live is None:
            return f"{ref.namespace}/{ref.name} not ready: the {ref.kind} does not exist"
        short = rollout_progress(live)
        if short is None:
            return None
        return f"{ref.namespace}/{ref.name} not ready: {short}" + "".join(f"; {x}" for x in self._reasons(live))

    def _reasons(self, live: dict[str, Any]) -> list[str]:
        """What explains an unready workload: its unready pods' container states, then Warning events."""
        meta = live["metadata"]
        ns = meta.get("namespace")
        selector = selector_string((live.get("spec") or {}).get("selector") or {})
        pods = self.list_objects("Pod", ns, label_selector=selector) if selector else []
        out: list[str] = []
        names = {meta["name"]}
        heads: dict[str, int] = {}  # pods with the same trouble are counted, not repeated
        for pod in pods:
            names.add(pod["metadata"]["name"])
            state = pod_problem(pod)
            if not state:
                continue
            head = state.split(" (", 1)[0]
            if head not in heads and len(heads) < MAX_PODS:
                out.append(f"pod {pod['metadata']['name']}: {state}")
            heads[head] = heads.get(head, 0) + 1
        more = [f"{n - 1} more pod{'s' if n > 2 else ''}: {h}" for h, n in heads.items() if n > 1]
        if more:
            out.append(", ".join(more))
        events = [e for e in self.list_objects("Event", ns)
                  if (e.get("involvedObject") or {}).get("name", "").startswith(tuple(names))
                  and e.get("type") == "Warning"]
        events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        seen: set[tuple[str, str]] = set()
        picked: list[str] = []
        for e in reversed(events):
            key = (str(e.get("reason")), _short(str(e.get("message", ""))))
            if key not in seen and len(picked) < MAX_EVENTS:
                seen.add(key)
                picked.append(f"event {key[0]}: {key[1]}")
        return out + picked[::-1]

    # -- data plane ------------------------------------------------------------------------------------
    def exec_stream(self, namespace: str, pod: str, container: str | None, argv: list[str],
                    stdin: bool = True) -> ExecStream:
        """A binary exec session in the pod (stdin → e.g. `pg_restore`, `tar x`); see ExecStream."""
        core = kubernetes.client.CoreV1Api(self.api)
        kwargs: dict[str, Any] = {"command": argv, "stdin": stdin, "stdout": True, "stderr": True, "tty": False,
                                  "_preload_content": False, "binary": True}
        if container:
            kwargs["container"] = container
        try:
            ws = kubernetes.stream.stream(core.connect_get_namespaced_pod_exec, pod, namespace, **kwargs)
        except Exception as exc:  # ApiException(status=0) wraps handshake failures
            raise TemporaryError(f"exec into {namespace}/{pod}: {getattr(exc, 'reason', exc)}") from None
        return ExecStream(ws, f"{namespace}/{pod}")

    @contextmanager
    def port_forward(self, namespace: str, pod: str | None, port: int,
                     selector: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
        """A local listener on 127.0.0.1 relaying each connection to `port` of the pod (or of a Running, Ready
        pod that `selector` matches, chosen again for every connection)."""
        relay = Relay(self, namespace, pod, port, selector)
        relay.start()
        try:
            yield relay.address
        finally:
            relay.stop()


class ExecStream:
    """An exec session: `write(bytes)`, `close_stdin()`, `read(timeout)` (stdout), `wait(timeout)` → exit code.

    With v5.channel.k8s.io, `close_stdin()` sends EOF to the process; v4 has no way to, so a reader that
    needs EOF must be given a self-delimiting stream (pg_restore's custom format and tar both are)."""

    def __init__(self, ws: Any, where: str) -> None:
        self.ws = ws
        self.where = where
        self.stderr = bytearray()

    @property
    def protocol(self) -> str | None:
        return getattr(self.ws, "subprotocol", None)

    def write(self, data: bytes) -> None:
        try:
            self.ws.write_stdin(data)
        except Exception as exc:
            raise TemporaryError(f"exec {self.where}: stdin closed ({exc.__class__.__name__})") from None

    def close_stdin(self) -> None:
        self.ws.close_channel(0)

    def read(self, timeout: float = 1.0) -> bytes:
        """Stdout received so far (waiting up to `timeout` for some); stderr is collected in `.stderr`."""
        self.ws.update(timeout=timeout)
        self.stderr += self.ws.read_channel(2)
        return bytes(self.ws.read_channel(1))

    def wait(self, timeout: float = 60.0) -> tuple[int, bytes]:
        """Run to the end (bounded): (exit code, remaining stdout)."""
        out = bytearray()
        deadline = time.monotonic() + timeout
        while self.ws.is_open() and time.monotonic() < deadline:
            out += self.read(min(1.0, max(0.0, deadline - time.monotonic())))
        out += bytes(self.ws.read_channel(1))
        self.stderr += self.ws.read_channel(2)
        if self.ws.is_open():
            self.close()
            raise TemporaryError(f"exec {self.where}: still running after {timeout:.0f}s")
        status = self.ws.read_channel(3)
        return exit_code(status), bytes(out)

    def close(self) -> None:
        self.ws.close()


def exit_code(status: bytes | str) -> int:
    """The v4 status on channel 3: a metav1.Status; failure carries the code in causes[ExitCode]."""
    if not status:
        return 0
    try:
        doc = json.loads(status)
    except ValueError:
        return 1
    if doc.get("status") == "Success":
        return 0
    for cause in (doc.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                return 1
    return 1


MAX_PODS = 3
MAX_EVENTS = 2


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def selector_string(selector: dict[str, Any]) -> str:
    """A LabelSelector as the query-string form (matchLabels and matchExpressions)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def rollout_progress(obj: dict[str, Any]) -> str | None:
    """kubectl rollout status: None when rolled out, else a short "0/3 ready"-style reason."""
    kind, meta = obj.get("kind"), obj.get("metadata") or {}
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    generation, observed = int(meta.get("generation") or 0), int(status.get("observedGeneration") or 0)
    if observed < generation:
        return f"waiting for the controller to observe generation {generation} (observed {observed})"
    if kind == "DaemonSet":
        want = int(status.get("desiredNumberScheduled") or 0)
        ready, updated = int(status.get("numberReady") or 0), int(status.get("updatedNumberScheduled") or 0)
        available = int(status.get("numberAvailable") or 0)
        if updated < want or ready < want or available < want:
            return f"{ready}/{want} ready, {updated}/{want} updated, {available}/{want} available"
        return None
    want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    ready, updated = int(status.get("readyReplicas") or 0), int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    deadline = next((c for c in status.get("conditions") or []
                     if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"), None)
    words = [f"{ready}/{want} ready"]
    if updated < want:
        words.append(f"{updated}/{want} updated")
    if available < want:
        words.append(f"{available}/{want} available")
    if kind == "Deployment" and int(status.get("replicas") or 0) > want:
        words.append(f"{int(status.get('replicas') or 0) - want} old replicas pending termination")
    if deadline is not None:
        words.append("progress deadline exceeded")
    if len(words) == 1 and ready >= want:
        return None
    return ", ".join(words)


def pod_problem(pod: dict[str, Any]) -> str | None:
    """Why a pod is not ready, from its container states (kubectl describe's view), or None."""
    status = pod.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    if (conds.get("Ready") or {}).get("status") == "True":
        return None
    reasons = []
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        if "waiting" in state:
            w = state["waiting"] or {}
            reasons.append(f"{w.get('reason', 'Waiting')} ({_short(str(w.get('message', '')), 160)})"
                           if w.get("message") else str(w.get("reason", "Waiting")))
        elif "terminated" in state and (state["terminated"] or {}).get("exitCode", 0) != 0:
            t = state["terminated"] or {}
            reasons.append(f"{t.get('reason', 'Terminated')} (exit {t.get('exitCode')})")
        elif not cs.get("ready"):
            reasons.append(f"container {cs.get('name')} not ready")
    if not reasons:
        phase = status.get("phase", "Pending")
        sched = conds.get("PodScheduled") or {}
        if sched.get("status") == "False":
            return f"{phase}: {sched.get('reason', '')} {_short(str(sched.get('message', '')), 160)}".strip()
        return str(phase)
    return "; ".join(dict.fromkeys(reasons))


class Relay:
    """127.0.0.1:<free port> → the pod's port, one portforward websocket per accepted connection."""

    def __init__(self, cluster: KubeCluster, namespace: str, pod: str | None, port: int,
                 selector: dict[str, str] | None = None) -> None:
        self.cluster, self.namespace, self.pod, self.port = cluster, namespace, pod, port
        self.selector = selector
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)  # so the accept loop notices stop() quickly
        self.address: tuple[str, int] = ("127.0.0.1", int(self.listener.getsockname()[1]))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: list[Any] = []

    def _label(self) -> str:
        return self.pod or ",".join(f"{k}={v}" for k, v in sorted((self.selector or {}).items()))

    def _target(self) -> str | None:
        """The pod for the next connection: the named one, or the newest Running, Ready pod of the selector."""
        if self.pod is not None:
            return self.pod
        ready = []
        for pod in self.cluster.list_objects("Pod", self.namespace, label_selector=self._label()):
            status = pod.get("status") or {}
            if status.get("phase") == "Running" and any(
                    c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
                ready.append((str(status.get("startTime") or ""), str(pod["metadata"]["name"])))
        return max(ready)[1] if ready else None

    def start(self) -> None:
        if self.pod is not None and self.cluster.get(Ref("Pod", self.pod, self.namespace)) is None:
            self.listener.close()
            raise PermanentError(f"port-forward: pod {self.namespace}/{self.pod} does not exist")
        if self.pod is None and not self.cluster.list_objects("Pod", self.namespace, label_selector=self._label()):
            self.listener.close()
            raise PermanentError(f"port-forward: no pod in {self.namespace} matches {self._label()}")
        t = threading.Thread(target=self._accept, name=f"port-forward {self._label()}:{self.port}", daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        self._open.append(conn)
        try:
            target = self._target()
            if target is None:  # no ready pod right now (a restart): the client sees a dropped connection
                conn.close()
                return
            core = kubernetes.client.CoreV1Api(self.cluster.api)
            pf = kubernetes.stream.portforward(core.connect_get_namespaced_pod_portforward, target, self.namespace,
                                               ports=str(self.port))
            remote = pf.socket(self.port)
            remote.setblocking(True)
        except Exception:
            conn.close()
            return
        self._open.append(remote)
        back = threading.Thread(target=_pump, args=(remote, conn), daemon=True)
        back.start()
        _pump(conn, remote)
        back.join(timeout=30)
        for s in (conn, remote):
            try:
                s.close()
            except OSError:
                pass
        pf.close()

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        for s in self._open:
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)


def _pump(src: Any, dst: Any) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@contextmanager
def reach(target: TargetConfig, name: str, cluster: KubeCluster | None = None) -> Iterator[tuple[str, int]]:
    """(host, port) of a pod's data-plane port named in environment.target.endpoints.

    `data_access: endpoint` (the sandbox): the endpoint itself, a real server standing in for the pod.
    `port-forward` (a real cluster): a local relay to endpoint.pod:endpoint.remote_port via the API."""
    ep = target.endpoints.get(name)
    if ep is None:
        raise PermanentError(f"environment.target.endpoints has no {name!r} (known: {', '.join(sorted(target.endpoints))})")
    if target.data_access == "endpoint":
        yield ep.host, ep.port
        return
    if not (ep.namespace and ep.pod and ep.remote_port):
        raise PermanentError(f"environment.target.endpoints.{name}: namespace, pod and remote_port are needed for "
                             f"data_access: {target.data_access}")
    if cluster is None:
        raise PermanentError(f"endpoint {name}: data_access {target.data_access} needs the cluster")
    with cluster.port_forward(ep.namespace, ep.pod, ep.remote_port) as address:
        yield address
