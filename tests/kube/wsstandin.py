"""A small stand-in for the API server's exec and port-forward websockets (channel.k8s.io, v4, v5).

Enough of RFC 6455 and of Kubernetes' channel protocol to test the client side at the protocol boundary:
every data frame starts with its channel byte (0 stdin, 1 stdout, 2 stderr, 3 status), the status on
channel 3 is a metav1.Status, and v5 adds the CLOSE signal (255, channel). The "processes" are fakes:
`head -c N` (reads N bytes of stdin, writes them to stdout: a self-delimiting reader like pg_restore),
`cat` (echoes until stdin is closed, v5 only), `sh -c "exit N"`. Port-forward echoes the bytes back.
Loopback only.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

# The framing is the sandbox API server's own (RFC 6455, server side); what is fake here is the processes.
from migrator.sandbox.kubeapi.websocket import Closed, WebSocket, accept_key


def status(code: int, argv: list[str]) -> bytes:
    if code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps({
        "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
        "message": f"command terminated with non-zero exit code: error executing command {argv}, exit code {code}",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }).encode()


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        rfile = sock.makefile("rb")
        request = rfile.readline()
        if not request:
            return  # closed before a request line
        lines = [request.decode("latin-1").rstrip("\r\n")]
        while line := rfile.readline().decode("latin-1").rstrip("\r\n"):
            lines.append(line)
        _, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        url = urlsplit(target)
        query = parse_qs(url.query)
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        chosen = next((p for p in offered if p in self.server.protocols), None)
        self.server.seen.append({"path": url.path, "query": query, "authorization": headers.get("authorization"),
                                 "offered": offered, "protocol": chosen})
        if headers.get("upgrade", "").lower() != "websocket" and "/pods/" in url.path:
            parts = url.path.split("/")  # /api/v1/namespaces/NS/pods/NAME: the pod exists, and runs
            body = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": parts[4], "name": parts[6]},
                               "status": {"phase": "Running"}}).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            return
        if chosen is None or headers.get("upgrade", "").lower() != "websocket":
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        accept = accept_key(headers["sec-websocket-key"])
        sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {chosen}\r\n\r\n").encode())
        conn = WebSocket(rfile, sock)
        try:
            if url.path.endswith("/exec"):
                self.exec(conn, query.get("command", []), chosen)
            elif url.path.endswith("/portforward"):
                self.portforward(conn, int(query["ports"][0]))
        except Closed:
            pass
        finally:
            conn.close()

    def exec(self, conn: WebSocket, argv: list[str], protocol: str) -> None:
        if argv[:2] == ["sh", "-c"] and argv[2].startswith("exit "):
            code = int(argv[2].split()[1])
            conn.channel(2, f"exiting {code}\n".encode())
            conn.channel(3, status(code, argv))
            return
        if argv[:2] == ["head", "-c"]:
            want, got = int(argv[2]), bytearray()
            while len(got) < want:
                _, data = conn.recv()  # a close frame raises Closed
                if data[:1] == b"\x00":
                    got += data[1:]
            conn.channel(1, bytes(got[:want]))
            self.server.received.append(bytes(got[:want]))
            conn.channel(3, status(0, argv))
            return
        if argv == ["cat"]:
            while True:
                _, data = conn.recv()  # a close frame raises Closed
                if data[:1] == b"\x00":
                    conn.channel(1, data[1:])
                elif protocol == "v5.channel.k8s.io" and data[:2] == b"\xff\x00":
                    conn.channel(3, status(0, argv))  # stdin closed: cat ends
                    return
        conn.channel(2, f"{argv[0]}: not found\n".encode())
        conn.channel(3, status(127, argv))

    def portforward(self, conn: WebSocket, port: int) -> None:
        # The first frame on the data (0) and error (1) channels names the port, little-endian.
        conn.channel(0, struct.pack("<H", port))
        conn.channel(1, struct.pack("<H", port))
        while True:
            _, data = conn.recv()  # a close frame raises Closed
            if data[:1] == b"\x00" and len(data) > 1:
                conn.channel(0, data[1:].upper())  # "the pod's server": echoes, upper-cased


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, protocols: tuple[str, ...]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.protocols = protocols
        self.seen: list[dict[str, Any]] = []
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=5)


def start(protocols: tuple[str, ...] = ("v4.channel.k8s.io", "channel.k8s.io")) -> Server:
    srv = Server(protocols)
    srv.thread.start()
    return srv
