"""Moving bytes through the Kubernetes API: exec streams with a byte source and sink, and Jobs followed to
their end with progress from their log. Only API calls (pods/exec, pods/log, Job status), so the same code
runs against the sandbox's stand-in and a real cluster.

- `exec_run`: stdin from an iterator of bytes (fed by a thread while stdout is read), stdout handed to a
  sink as it arrives, stderr kept (its tail), the exit code from the status channel. The end of stdin is
  sent as the v5 close signal; with a server that only speaks v4 the command must be self-delimiting
  (tar, pg_restore's custom format), which `exec_run` checks by failing loudly instead of hanging.
- `wait_for_job`: polls the Job's conditions and follows the log of each of its pods as it starts, one
  line at a time to a callback; returns how the Job ended (Complete, or Failed with the reason).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from migrator.adapters.kube import KubeCluster, Ref, exit_code, selector_string
from migrator.errors import PermanentError, TemporaryError

STDERR_TAIL = 4096


@dataclass
class ExecResult:
    code: int
    stderr: bytes  # the tail (STDERR_TAIL bytes at most)
    bytes_in: int
    bytes_out: int


def exec_run(cluster: KubeCluster, namespace: str, pod: str, container: str | None, argv: list[str], *,
             stdin: Iterable[bytes] | None = None, stdout: Callable[[bytes], None] | None = None,
             timeout: float = 3600.0) -> ExecResult:
    """Run `argv` in the pod through pods/exec; bounded by `timeout` seconds in all."""
    st = cluster.exec_stream(namespace, pod, container, argv, stdin=stdin is not None)
    deadline = time.monotonic() + timeout
    fed = {"bytes": 0}
    failure: list[BaseException] = []

    def feed() -> None:
        assert stdin is not None
        try:
            for chunk in stdin:
                if chunk:
                    st.write(chunk)
                    fed["bytes"] += len(chunk)
            if st.protocol == "v5.channel.k8s.io":
                st.close_stdin()
        except BaseException as exc:  # the stream died, or the source raised: reported by the caller
            failure.append(exc)
            st.close()

    writer = threading.Thread(target=feed, name=f"exec stdin {namespace}/{pod}", daemon=True) if stdin else None
    if writer is not None:
        writer.start()
    try:
        status = _pump(st, stdout, deadline, timeout, namespace, pod, argv[0], failure)
    except Exception:
        if failure:  # the source failed first; the stream error is its consequence
            raise failure[0] from None
        raise
    finally:
        if st.ws.is_open():
            st.close()
        if writer is not None:
            writer.join(timeout=10)
    if failure and not isinstance(failure[0], TemporaryError):
        raise failure[0]
    if not status[0]:
        if failure:
            raise failure[0]
        raise TemporaryError(f"exec {namespace}/{pod} {argv[0]}: the stream ended without an exit status")
    return ExecResult(exit_code(status[0]), bytes(st.stderr)[-STDERR_TAIL:], fed["bytes"], status[1])


def _pump(st: Any, stdout: Callable[[bytes], None] | None, deadline: float, timeout: float, namespace: str,
          pod: str, what: str, failure: list[BaseException]) -> tuple[Any, int]:
    """Read stdout to the sink until the stream ends; (status channel, stdout bytes)."""
    out = 0
    while st.ws.is_open():
        if failure:
            raise failure[0]
        if time.monotonic() > deadline:
            raise TemporaryError(f"exec {namespace}/{pod} {what}: still running after {timeout:.0f}s")
        data = st.read(timeout=1.0)
        if data:
            out += len(data)
            if stdout is not None:
                stdout(data)
    rest = bytes(st.ws.read_channel(1))
    if rest:
        out += len(rest)
        if stdout is not None:
            stdout(rest)
    st.stderr += st.ws.read_channel(2)
    return st.ws.read_channel(3), out


@dataclass
class JobOutcome:
    succeeded: bool
    reason: str
    message: str
    pods: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


class _LogFollower:
    """Follows one pod's log in a thread, line by line."""

    def __init__(self, cluster: KubeCluster, namespace: str, pod: str, on_line: Callable[[str], None]) -> None:
        self.cluster, self.namespace, self.pod, self.on_line = cluster, namespace, pod, on_line
        self.thread = threading.Thread(target=self._run, name=f"log {namespace}/{pod}", daemon=True)
        self.resp: Any = None

    def _run(self) -> None:
        path = f"/api/v1/namespaces/{quote(self.namespace, safe='')}/pods/{quote(self.pod, safe='')}/log"
        try:
            req = self.cluster.api.param_serialize("GET", path, query_params=[("follow", "true")],
                                                   header_params={"Accept": "*/*"}, auth_settings=["BearerToken"])
            self.resp = self.cluster.api.call_api(*req, _request_timeout=(5.0, None))
            if int(self.resp.status) != 200:
                return
            pending = b""
            for chunk in self.resp.response.stream(4096, decode_content=True):
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    self.on_line(line.decode(errors="replace"))
            if pending:
                self.on_line(pending.decode(errors="replace"))
        except Exception:  # a cut log stream loses progress lines only; the Job's status decides
            return

    def stop(self) -> None:
        if self.resp is not None:
            try:
                self.resp.response.release_conn()
            except Exception:
                pass


def wait_for_job(cluster: KubeCluster, namespace: str, name: str, *, on_line: Callable[[str], None] | None = None,
                 timeout: float = 3600.0, poll: float = 0.5) -> JobOutcome:
    """Until the Job is Complete or Failed (or `timeout`, a TemporaryError: the Job keeps running, and a
    later call re-attaches to it)."""
    deadline = time.monotonic() + timeout
    followers: dict[str, _LogFollower] = {}
    try:
        while True:
            job = cluster.get(Ref("Job", name, namespace))
            if job is None:
                raise PermanentError(f"Job {namespace}/{name} does not exist")
            status = job.get("status") or {}
            conds = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
            selector = selector_string((job.get("spec") or {}).get("selector") or {})
            pods = cluster.list_objects("Pod", namespace, label_selector=selector) if selector else []
            if on_line is not None:
                for pod in pods:
                    pname = pod["metadata"]["name"]
                    phase = (pod.get("status") or {}).get("phase")
                    if pname not in followers and phase in ("Running", "Succeeded", "Failed"):
                        followers[pname] = _LogFollower(cluster, namespace, pname, on_line)
                        followers[pname].thread.start()
            names = sorted(p["metadata"]["name"] for p in pods)
            for kind, ok in (("Complete", True), ("Failed", False)):
                if kind in conds:
                    for f in followers.values():
                        f.thread.join(timeout=10)  # the rest of the log, once the container has ended
                    cond = conds[kind]
                    return JobOutcome(ok, str(cond.get("reason") or kind), str(cond.get("message") or ""), names,
                                      status)
            if time.monotonic() > deadline:
                raise TemporaryError(f"Job {namespace}/{name} still running after {timeout:.0f}s "
                                     f"(active {status.get('active', 0)}, failed {status.get('failed', 0)})")
            time.sleep(poll)
    finally:
        for f in followers.values():
            f.stop()
