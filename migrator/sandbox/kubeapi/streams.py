"""pods/exec, pods/portforward and pods/log for the pods the node runs (the kubelet's streaming server).

- exec: a websocket speaking the channel protocol (`v5.channel.k8s.io`, `v4.channel.k8s.io`): channel 0
  stdin, 1 stdout, 2 stderr, 3 the final metav1.Status (exit code in details.causes[ExitCode]), 4 resize
  (ignored); v5 adds the close signal (255, channel) a client sends at the end of its stdin. The command
  runs as a `docker exec` in the container; stdin EOF is a half-close of the exec's connection.
- portforward: a websocket (`v4.channel.k8s.io`, `portforward.k8s.io`) with a data and an error channel
  per requested port, each opened with the port number (2 bytes, little-endian); the connection goes to
  localhost:port inside the pod's network namespace, as the CRI's port-forward does.
- log: plain text (chunked while following) from the container's output; `container`, `follow`,
  `tailLines`, `timestamps`, `previous`, `sinceSeconds`, `limitBytes`.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from . import errors
from .node import L_ATTEMPT, L_CONTAINER, L_ROLE
from .resources import POD
from .websocket import OP_BINARY, OP_TEXT, Closed, WebSocket, accept_key

if TYPE_CHECKING:
    from .kubelet import Kubelet
    from .server import Handler

log = logging.getLogger("migrator.sandbox.kubeapi.streams")

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PORTFORWARD_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")
CH_STDIN, CH_STDOUT, CH_STDERR, CH_ERROR, CH_RESIZE, CH_CLOSE = 0, 1, 2, 3, 4, 255


def _bool(query: dict[str, list[str]], key: str, default: bool = False) -> bool:
    values = query.get(key)
    return default if not values else values[-1] in ("true", "1", "True")


def exit_status(code: int, argv: list[str]) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: error executing command {argv}: "
                       f"exit code {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


class PodStreams:
    def __init__(self, kubelet: Kubelet | None) -> None:
        self.kubelet = kubelet

    # -- lookup --------------------------------------------------------------------------------------
    def _pod(self, h: Handler, ns: str, name: str) -> dict[str, Any]:
        pod = h.server.store.get(POD.key, ns, name)
        if pod is None:
            raise errors.not_found(POD, name)
        if self.kubelet is None:
            raise errors.bad_request(f"pod {name}: the stand-in has no node (start it with a node dockerd) "
                                     "so no container runs for it")
        return pod

    def _container(self, pod: dict[str, Any], container: str | None, previous: bool = False,
                   running: bool = True) -> tuple[str, dict[str, Any]]:
        """(docker id, inspect) of the named container of the pod (the newest attempt, or the one before)."""
        assert self.kubelet is not None
        spec = pod.get("spec") or {}
        names = [str(c["name"]) for c in spec.get("containers") or []]
        inits = [str(c["name"]) for c in spec.get("initContainers") or []]
        pname = pod["metadata"]["name"]
        if not container:
            default = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
            if len(names) == 1 or default in names:
                container = default if default in names else names[0]
            else:
                raise errors.bad_request(f"a container name must be specified for pod {pname}, choose one of: "
                                         f"[{' '.join(names)}]")
        if container not in names + inits:
            raise errors.bad_request(f"container {container} is not valid for pod {pname}")
        if not self.kubelet.claims(spec, None) and not self.kubelet.node.list_pod_containers(pod["metadata"]["uid"]):
            raise errors.bad_request(f"pod {pname}: its images are not on the stand-in's node, so no container "
                                     "runs for it (the readiness simulator plays it)")
        role = "init" if container in inits else "app"
        attempts = [c for c in self.kubelet.node.list_pod_containers(pod["metadata"]["uid"])
                    if (c.get("Labels") or {}).get(L_CONTAINER) == container and (c.get("Labels") or {}).get(L_ROLE) == role]
        attempts.sort(key=lambda c: int((c.get("Labels") or {}).get(L_ATTEMPT, "0")), reverse=True)
        index = 1 if previous else 0
        if len(attempts) <= index:
            if previous:
                raise errors.bad_request(f'previous terminated container "{container}" in pod "{pname}" not found')
            raise errors.bad_request(f'container "{container}" in pod "{pname}" is waiting to start: ContainerCreating')
        info = self.kubelet.node.inspect(str(attempts[index]["Id"])) or {}
        if running and not (info.get("State") or {}).get("Running"):
            raise errors.bad_request(f'container not found ("{container}")' if not info else
                                     f"unable to upgrade connection: container {container} in pod {pname} is not running")
        return str(attempts[index]["Id"]), info

    def _sandbox_pid(self, pod: dict[str, Any]) -> int:
        assert self.kubelet is not None
        for c in self.kubelet.node.list_pod_containers(pod["metadata"]["uid"]):
            if (c.get("Labels") or {}).get(L_ROLE) == "sandbox" and c.get("State") == "running":
                info = self.kubelet.node.inspect(str(c["Id"])) or {}
                pid = int((info.get("State") or {}).get("Pid") or 0)
                if pid:
                    return pid
        raise errors.bad_request(f"pod {pod['metadata']['name']} has no running sandbox: it is not running")

    # -- entry -----------------------------------------------------------------------------------------
    def handle(self, h: Handler, method: str, ns: str, name: str, sub: str) -> None:
        query = parse_qs(urlsplit(h.path).query, keep_blank_values=True)
        if sub == "log":
            if method != "GET":
                raise errors.method_not_allowed(method)
            self.log(h, ns, name, query)
            return
        if method not in ("GET", "POST"):
            raise errors.method_not_allowed(method)
        upgrade = (h.headers.get("Upgrade") or "").lower()
        if sub == "portforward" and upgrade == "spdy/3.1":
            self.portforward_spdy(h, ns, name)
            return
        if upgrade != "websocket":
            raise errors.bad_request(f"pods/{sub} needs a websocket upgrade (SPDY is served for portforward only)")
        if sub == "exec":
            self.exec(h, ns, name, query)
        elif sub == "portforward":
            self.portforward(h, ns, name, query)
        else:
            raise errors.bad_request(f"pods/{sub} is not served by the stand-in")

    def _upgrade(self, h: Handler, supported: tuple[str, ...]) -> tuple[WebSocket, str]:
        offered = [p.strip() for p in (h.headers.get("Sec-WebSocket-Protocol") or "").split(",") if p.strip()]
        chosen = next((p for p in offered if p in supported), None)
        if chosen is None:
            raise errors.bad_request(f"none of the websocket subprotocols {offered} is served; "
                                     f"supported: {', '.join(supported)}")
        key = h.headers.get("Sec-WebSocket-Key") or ""
        h.send_response_only(101)
        h.send_header("Upgrade", "websocket")
        h.send_header("Connection", "Upgrade")
        h.send_header("Sec-WebSocket-Accept", accept_key(key))
        h.send_header("Sec-WebSocket-Protocol", chosen)
        h.end_headers()
        h.wfile.flush()
        h.close_connection = True
        return WebSocket(h.rfile, h.connection), chosen

    # -- exec ------------------------------------------------------------------------------------------
    def exec(self, h: Handler, ns: str, name: str, query: dict[str, list[str]]) -> None:
        pod = self._pod(h, ns, name)  # 404, or 400 without a node
        assert self.kubelet is not None
        argv = query.get("command") or []
        if not argv:
            raise errors.bad_request("you must specify at least 1 command")
        cid, _ = self._container(pod, (query.get("container") or [""])[-1] or None)
        want_stdin, tty = _bool(query, "stdin"), _bool(query, "tty")
        ws, protocol = self._upgrade(h, EXEC_PROTOCOLS)
        try:
            ex = self.kubelet.node.exec(cid, argv, stdin=want_stdin, tty=tty)
        except Exception as exc:
            ws.channel(CH_ERROR, json.dumps({"metadata": {}, "status": "Failure", "reason": "InternalError",
                                             "message": f"exec failed: {exc}"}).encode())
            ws.close()
            return
        done = threading.Event()

        def pump_out() -> None:
            try:
                _copy_output(ex.sock, ws, tty)
                code = self.kubelet.node.exec_exit_code(ex.id) if self.kubelet else None
                ws.channel(CH_ERROR, json.dumps(exit_status(code if code is not None else 1, argv)).encode())
            except Closed:
                pass
            except OSError as exc:
                log.debug("exec output: %s", exc)
            finally:
                done.set()
                ws.close()
                _shutdown(h.connection, socket.SHUT_RD, delay=1.0)

        out = threading.Thread(target=pump_out, name=f"exec {ns}/{name}", daemon=True)
        out.start()
        try:
            while not done.is_set():
                op, data = ws.recv()
                if op not in (OP_BINARY, OP_TEXT) or not data:
                    continue
                ch, payload = data[0], data[1:]
                if ch == CH_STDIN and want_stdin and payload:
                    ex.sock.sendall(payload)
                elif ch == CH_CLOSE and protocol.startswith("v5") and payload[:1] == bytes([CH_STDIN]):
                    _shutdown(ex.sock, socket.SHUT_WR)
        except (Closed, OSError):
            pass
        finally:
            if want_stdin and not done.is_set():
                _shutdown(ex.sock, socket.SHUT_WR)  # the client went away: the process sees EOF
            out.join(timeout=30)
            try:
                ex.sock.close()
            except OSError:
                pass

    # -- port-forward ------------------------------------------------------------------------------------
    def portforward(self, h: Handler, ns: str, name: str, query: dict[str, list[str]]) -> None:
        pod = self._pod(h, ns, name)  # 404, or 400 without a node
        assert self.kubelet is not None
        ports: list[int] = []
        for value in query.get("ports") or []:
            for part in value.split(","):
                if not part.strip().isdigit() or not 0 < int(part) < 65536:
                    raise errors.bad_request(f"invalid port {part!r}")
                ports.append(int(part))
        if not ports:
            raise errors.bad_request("query parameter \"port\" is required")
        pid = self._sandbox_pid(pod)
        ws, _ = self._upgrade(h, PORTFORWARD_PROTOCOLS)
        conns: dict[int, socket.socket] = {}
        try:
            for i, port in enumerate(ports):
                ws.channel(2 * i, struct.pack("<H", port))
                ws.channel(2 * i + 1, struct.pack("<H", port))
            for i, port in enumerate(ports):
                try:
                    conns[i] = self.kubelet.node.connect_in_pod(pid, port)
                except OSError as exc:
                    ws.channel(2 * i + 1, (f"an error occurred forwarding {port} -> {port}: error forwarding port "
                                           f"{port} to pod {name}: failed to connect to localhost:{port} inside the "
                                           f"pod's network namespace: {exc.strerror or exc}").encode())
            if not conns:
                ws.close()
                return
            pumps = [threading.Thread(target=_pod_to_ws, args=(s, ws, 2 * i), daemon=True) for i, s in conns.items()]
            for t in pumps:
                t.start()
            while not ws.closed:
                op, data = ws.recv()
                if op != OP_BINARY or len(data) < 1:
                    continue
                ch = data[0]
                target = conns.get(ch // 2)
                if ch % 2 == 0 and target is not None and len(data) > 1:
                    try:
                        target.sendall(data[1:])
                    except OSError:
                        conns.pop(ch // 2, None)
        except (Closed, OSError):
            pass
        finally:
            ws.close()
            for s in conns.values():
                try:
                    s.close()
                except OSError:
                    pass

    def portforward_spdy(self, h: Handler, ns: str, name: str) -> None:
        """kubectl port-forward's SPDY/3.1 (kubeapi/spdy.py)."""
        from .spdy import Session, serve_portforward

        pod = self._pod(h, ns, name)  # 404, or 400 without a node
        assert self.kubelet is not None
        offered = [p.strip() for p in (h.headers.get("X-Stream-Protocol-Version") or "").split(",")]
        offered += [v.strip() for v in h.headers.get_all("X-Stream-Protocol-Version") or []]
        if "portforward.k8s.io" not in offered:
            raise errors.bad_request(f"unsupported stream protocols {offered}; supported: portforward.k8s.io")
        pid = self._sandbox_pid(pod)
        kubelet = self.kubelet
        h.send_response_only(101)
        h.send_header("Connection", "Upgrade")
        h.send_header("Upgrade", "SPDY/3.1")
        h.send_header("X-Stream-Protocol-Version", "portforward.k8s.io")
        h.end_headers()
        h.wfile.flush()
        h.close_connection = True
        serve_portforward(Session(h.rfile, h.connection), lambda port: kubelet.node.connect_in_pod(pid, port), name)

    # -- log -----------------------------------------------------------------------------------------
    def log(self, h: Handler, ns: str, name: str, query: dict[str, list[str]]) -> None:
        pod = self._pod(h, ns, name)  # 404, or 400 without a node
        assert self.kubelet is not None
        previous = _bool(query, "previous")
        cid, _ = self._container(pod, (query.get("container") or [""])[-1] or None, previous=previous, running=False)
        tail = (query.get("tailLines") or [""])[-1]
        limit = (query.get("limitBytes") or [""])[-1]
        since = (query.get("sinceSeconds") or [""])[-1]
        for label, value in (("tailLines", tail), ("limitBytes", limit), ("sinceSeconds", since)):
            if value and not value.isdigit():
                raise errors.bad_request(f"{label} must be a non-negative integer, got {value!r}")
        follow = _bool(query, "follow") and not previous
        stream = self.kubelet.node.logs(cid, follow=follow, tail=int(tail) if tail else None,
                                        timestamps=_bool(query, "timestamps"),
                                        since=int(time.time()) - int(since) if since else None)
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Cache-Control", "no-cache, private")
        h.send_header("Connection", "close")  # a client must not reuse it: the stream owns the connection
        h.end_headers()
        h.close_connection = True
        left = int(limit) if limit else None
        try:
            for chunk in stream:
                if h.server.stopping.is_set():
                    break
                if left is not None:
                    chunk = chunk[:left]
                    left -= len(chunk)
                if chunk:
                    h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    h.wfile.flush()
                if left == 0:
                    break
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except OSError:
            pass
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def _copy_output(sock: socket.socket, ws: WebSocket, tty: bool) -> None:
    """docker's exec output (8-byte headers: stream, 0, 0, 0, size) -> channels 1 and 2."""
    if tty:
        while chunk := sock.recv(65536):
            ws.channel(CH_STDOUT, chunk)
        return
    buf = b""
    while True:
        chunk = sock.recv(262144)
        if not chunk:
            return
        buf += chunk
        while len(buf) >= 8:
            kind, size = buf[0], struct.unpack(">I", buf[4:8])[0]
            if len(buf) < 8 + size:
                break
            payload, buf = buf[8:8 + size], buf[8 + size:]
            if payload:
                ws.channel(CH_STDERR if kind == 2 else CH_STDOUT, payload)


def _pod_to_ws(sock: socket.socket, ws: WebSocket, channel: int) -> None:
    try:
        while chunk := sock.recv(65536):
            ws.channel(channel, chunk)
    except (Closed, OSError):
        pass
    ws.close()  # the pod closed the connection: so does the stream


def _shutdown(sock: socket.socket, how: int, delay: float = 0.0) -> None:
    def do() -> None:
        try:
            sock.shutdown(how)
        except OSError:
            pass

    if delay:
        t = threading.Timer(delay, do)
        t.daemon = True
        t.start()
    else:
        do()
