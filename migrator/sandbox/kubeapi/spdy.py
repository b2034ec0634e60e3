"""SPDY/3.1 for `kubectl port-forward` (portforward.k8s.io): the server side of what kubectl speaks.

kubectl first asks for a websocket carrying SPDY (`SPDY/3.1+portforward.k8s.io`); the stand-in refuses
that, and kubectl falls back to a plain `Upgrade: SPDY/3.1`, served here. Per local connection kubectl
opens two streams (SYN_STREAM with the headers `streamType: error|data`, `port`, `requestID`); the server
answers each with SYN_REPLY, connects to localhost:port inside the pod once the data stream is there, and
relays DATA frames both ways. The pod closing its side ends the data stream (FIN), then the error stream;
a refused connection is a message on the error stream. Header blocks are zlib-compressed with the
SPDY/3 dictionary (one compression context per direction for the whole session). Flow control is not
enforced (windows are not counted; kubectl's spdystream does not either).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import zlib
from collections.abc import Callable
from typing import Any

log = logging.getLogger("migrator.sandbox.kubeapi.spdy")

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_CANCEL = 5

# The SPDY/3 header dictionary (draft 3, 2.6.10.1): length-prefixed header names and values, then a tail.
_WORDS = ("options head post put delete trace accept accept-charset accept-encoding accept-language "
          "accept-ranges age allow authorization cache-control connection content-base content-encoding "
          "content-language content-length content-location content-md5 content-range content-type date etag "
          "expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since "
          "last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer "
          "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate "
          "method get status |200 OK| version HTTP/1.1 url public set-cookie keep-alive origin")
_TAIL = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
         "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
         "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
         "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
         "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
         "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")


def _dictionary() -> bytes:
    words = [w.replace("|", "") for w in _WORDS.replace("|200 OK|", "|200\x00OK|").split(" ")]
    words = [w.replace("\x00", " ") for w in words]
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + _TAIL.encode()


DICTIONARY = _dictionary()


class Closed(Exception):
    pass


class Session:
    """One SPDY session over a byte stream (the upgraded HTTP connection)."""

    def __init__(self, rfile: Any, sock: socket.socket) -> None:
        self.rfile, self.sock = rfile, sock
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)
        self._wlock = threading.Lock()
        self.closed = False

    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise Closed("connection closed")
        return bytes(data)

    def read_frame(self) -> tuple[bool, int, int, bytes]:
        """(is_control, type or stream id, flags, payload)."""
        head = self._read(8)
        first, flags_len = struct.unpack(">II", head)
        flags, length = flags_len >> 24, flags_len & 0xFFFFFF
        payload = self._read(length) if length else b""
        if first & 0x80000000:
            return True, first & 0xFFFF, flags, payload
        return False, first & 0x7FFFFFFF, flags, payload

    def headers(self, block: bytes) -> dict[str, str]:
        raw = self._inflate.decompress(block)
        (count,) = struct.unpack(">I", raw[:4])
        pos, out = 4, {}
        for _ in range(count):
            (n,) = struct.unpack(">I", raw[pos:pos + 4])
            name = raw[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            (m,) = struct.unpack(">I", raw[pos:pos + 4])
            value = raw[pos + 4:pos + 4 + m].decode()
            pos += 4 + m
            out[name.lower()] = value
        return out

    def _send(self, data: bytes) -> None:
        with self._wlock:
            if self.closed:
                raise Closed("session closed")
            try:
                self.sock.sendall(data)
            except OSError as exc:
                self.closed = True
                raise Closed(str(exc)) from None

    def _control(self, kind: int, flags: int, payload: bytes) -> None:
        self._send(struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload)

    def syn_reply(self, stream: int, headers: dict[str, str] | None = None, fin: bool = False) -> None:
        pairs = headers or {}
        block = struct.pack(">I", len(pairs)) + b"".join(
            struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode() for k, v in pairs.items())
        with self._wlock:  # the compression context is shared: compress and send in one order
            packed = self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        self._control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream) + packed)

    def data(self, stream: int, payload: bytes, fin: bool = False) -> None:
        self._send(struct.pack(">II", stream & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(payload)) + payload)

    def ping(self, payload: bytes) -> None:
        self._control(PING, 0, payload)

    def rst(self, stream: int, status: int = RST_CANCEL) -> None:
        self._control(RST_STREAM, 0, struct.pack(">II", stream, status))

    def close(self) -> None:
        with self._wlock:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Pair:
    def __init__(self, port: int) -> None:
        self.port = port
        self.error: int | None = None
        self.data: int | None = None
        self.conn: socket.socket | None = None


def serve_portforward(session: Session, connect: Callable[[int], socket.socket], pod: str) -> None:
    """Serve kubectl's port-forward streams until the session ends."""
    pairs: dict[str, _Pair] = {}
    by_stream: dict[int, _Pair] = {}
    threads: list[threading.Thread] = []

    def pump(pair: _Pair) -> None:
        assert pair.conn is not None and pair.data is not None
        try:
            while chunk := pair.conn.recv(65536):
                session.data(pair.data, chunk)
            session.data(pair.data, b"", fin=True)
            if pair.error is not None:
                session.data(pair.error, b"", fin=True)
        except (Closed, OSError):
            pass

    def start(pair: _Pair) -> None:
        assert pair.data is not None and pair.error is not None
        try:
            pair.conn = connect(pair.port)
        except OSError as exc:
            msg = (f"an error occurred forwarding {pair.port} -> {pair.port}: error forwarding port {pair.port} to "
                   f"pod {pod}: failed to connect to localhost:{pair.port} inside the pod's network namespace: "
                   f"{exc.strerror or exc}")
            session.data(pair.error, msg.encode(), fin=True)
            session.data(pair.data, b"", fin=True)
            return
        t = threading.Thread(target=pump, args=(pair,), name=f"spdy pf {pod}:{pair.port}", daemon=True)
        t.start()
        threads.append(t)

    try:
        while True:
            control, kind, flags, payload = session.read_frame()
            if control:
                if kind == SYN_STREAM:
                    stream = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                    headers = session.headers(payload[10:])
                    session.syn_reply(stream)
                    port = headers.get("port", "")
                    if not port.isdigit():
                        session.rst(stream, 1)  # PROTOCOL_ERROR
                        continue
                    pair = pairs.setdefault(headers.get("requestid", str(stream)), _Pair(int(port)))
                    by_stream[stream] = pair
                    if headers.get("streamtype") == "error":
                        pair.error = stream
                    elif headers.get("streamtype") == "data":
                        pair.data = stream
                    if pair.error is not None and pair.data is not None and pair.conn is None:
                        start(pair)
                elif kind == PING:
                    session.ping(payload)
                elif kind == RST_STREAM:
                    stream = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                    gone = by_stream.pop(stream, None)
                    if gone is not None and gone.conn is not None:
                        gone.conn.close()
                elif kind == GOAWAY:
                    return
                # SETTINGS, HEADERS and WINDOW_UPDATE need no answer here
                continue
            target = by_stream.get(kind)
            if target is None or target.conn is None or kind != target.data:
                continue
            try:
                if payload:
                    target.conn.sendall(payload)
                if flags & FLAG_FIN:
                    target.conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
    except Closed:
        return
    finally:
        for p in pairs.values():
            if p.conn is not None:
                try:
                    p.conn.close()
                except OSError:
                    pass
        for t in threads:
            t.join(timeout=5)
        session.close()
