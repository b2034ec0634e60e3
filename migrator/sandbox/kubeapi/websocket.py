"""The server side of RFC 6455, as much as the API server's streaming endpoints use.

Binary and text messages (fragments joined), ping answered with pong, close answered with close. Client
frames are masked; unmasking XORs the payload as one big integer (fast enough for hundreds of MB/s).
Writes from several threads are serialised by a lock.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from typing import Any

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 64 * 1024 * 1024


class Closed(Exception):
    """The peer closed the websocket (or the connection)."""


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


class WebSocket:
    def __init__(self, rfile: Any, sock: socket.socket) -> None:
        self.rfile = rfile
        self.sock = sock
        self._wlock = threading.Lock()
        self.closed = False

    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise Closed("connection closed")
        return data

    def recv(self) -> tuple[int, bytes]:
        """One whole message: (opcode, payload). Raises Closed on a close frame or EOF."""
        opcode: int | None = None
        parts: list[bytes] = []
        size = 0
        while True:
            b0, b1 = self._read(2)
            fin, op = b0 & 0x80, b0 & 0x0F
            length = b1 & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else b""
            payload = self._read(length) if length else b""
            if mask:
                payload = unmask(payload, mask)
            if op == OP_PING:
                self.send(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                self.close()
                raise Closed("peer sent close")
            if op != OP_CONT:
                opcode = op
            parts.append(payload)
            size += len(payload)
            if size > MAX_MESSAGE:
                self.close(1009)
                raise Closed("message too big")
            if fin:
                return opcode or OP_BINARY, b"".join(parts)

    def send(self, opcode: int, data: bytes) -> None:
        n = len(data)
        if n < 126:
            head = struct.pack(">BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
        with self._wlock:
            if self.closed and opcode != OP_CLOSE:
                raise Closed("already closed")
            try:
                self.sock.sendall(head + data if n < 16384 else head)
                if n >= 16384:
                    self.sock.sendall(data)
            except OSError as exc:
                self.closed = True
                raise Closed(str(exc)) from None

    def channel(self, ch: int, data: bytes) -> None:
        self.send(OP_BINARY, bytes([ch]) + data)

    def close(self, code: int = 1000) -> None:
        with self._wlock:
            if self.closed:
                return
            self.closed = True
            try:
                self.sock.sendall(struct.pack(">BBH", 0x80 | OP_CLOSE, 2, code))
            except OSError:
                pass
