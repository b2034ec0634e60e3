"""`migrate serve`: a read-only local web page of the run: every step, the timeline so far, the
journal's tail, refreshed live.

It reads the state file and the journal the way `migrate status` does (no lock taken, nothing written:
the state directory may be read-only) on every request, so it shows a run of another process as it goes.
It binds to loopback only: the page has no login, and a run's step names, hosts and errors are nobody
else's business (from elsewhere, use an SSH tunnel). The Host header is checked too, so a web page in
the operator's browser cannot read it through DNS rebinding. Nothing from the runbook's secrets or the
environment is put on the page: only what the state and the journal hold (masked when written) and the
runbook's step ids, types and phase names.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.commands import report, timeline, webpage
from migrator.commands.common import load, new_engine, state_dir_for
from migrator.engine import live
from migrator.errors import InputError, MigratorError

if TYPE_CHECKING:  # http.server is imported when serving, not for `migrate --help`
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

JOURNAL_LINES = 30
HEADERS = {
    # Nothing inline may run, nothing is fetched from elsewhere, no frame may hold the page.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def loopback(host: str) -> str:
    """The address to bind: `host` if it is a loopback address (127.0.0.0/8, ::1, localhost)."""
    address = "127.0.0.1" if host == "localhost" else host
    try:
        ok = ipaddress.ip_address(address).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise InputError(f"--host {host}: expected a loopback address (127.0.0.1, ::1 or localhost); the page has "
                         "no login, so it is never served to the network: from another machine use an SSH tunnel "
                         "(ssh -L 8765:127.0.0.1:8765 HOST)")
    return address


class Viewer:
    """Reads a runbook's state and journal into the page's snapshot, afresh on every call."""

    def __init__(self, runbook_path: Path, state_dir: Path | None) -> None:
        self.runbook = load(runbook_path, check_secrets=False)
        self.state_dir = state_dir_for(self.runbook, state_dir)

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        try:
            return self._snapshot(now)
        except MigratorError as exc:  # e.g. a state file that cannot be trusted: say so, keep serving
            return {"runbook": self.runbook.name, "now": now, "problem": str(exc)}
        except OSError as exc:  # e.g. a journal (mode 0600) of another user
            return {"runbook": self.runbook.name, "now": now,
                    "problem": f"{exc.filename or self.state_dir}: cannot read: {exc.strerror}"}

    def _snapshot(self, now: float) -> dict[str, Any]:
        engine = new_engine(self.runbook, self.state_dir)
        status = engine.status()
        built = report.build(self.runbook, engine.state, engine.session.journal)
        of = {s["id"]: s for s in built["steps"]}
        steps = []
        for s in status["steps"]:
            running = s["status"] == "running" and s["started_at"]
            figures = {k: v for k, v in (of.get(s["id"], {}).get("figures") or {}).items()
                       if isinstance(v, int | float) and not isinstance(v, bool)}
            steps.append({**s, "figures": figures,
                          "duration_s": round(now - s["started_at"], 1) if running else of.get(s["id"], {}).get("duration_s")})
        events = engine.session.journal.read()
        live_doc = live.read(engine.session.live.path)
        for step in steps:
            # The running steps' copies, from this attempt only (not bars a failed or earlier attempt left).
            step["bars"] = live.bars_of(live_doc, step["id"], step["started_at"]) if step["status"] == "running" else []
        return {
            "runbook": status["runbook"], "now": now, "lock": status["lock"],
            "runbook_changed": status["runbook_changed"],
            "phase_names": {str(k): v for k, v in self.runbook.phase_names.items()},
            "progress": {"total": len(steps), "done": sum(s["status"] in ("succeeded", "skipped") for s in steps),
                         "failed": sum(s["status"] == "failed" for s in steps)},
            "running": [s for s in steps if s["status"] == "running"],
            "steps": steps,
            "gates_passed": built["gates_passed"],
            "write_downtime_s": built["write_downtime_s"],
            "journal": events[-JOURNAL_LINES:],
            "timeline_svg": timeline.svg(built, now=now),
        }


def _handler(viewer: Viewer, hosts: set[str]) -> type[BaseHTTPRequestHandler]:
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        def version_string(self) -> str:
            return "migrate-serve"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(body=False)

        def _refuse(self) -> None:
            self._send(405, "text/plain; charset=utf-8", b"read-only: GET only\n", True, {"Allow": "GET, HEAD"})

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

        def _answer(self, body: bool) -> None:
            if self.headers.get("Host", "") not in hosts:
                self._send(421, "text/plain; charset=utf-8", b"unknown Host\n", body)
                return
            path = self.path.split("?", 1)[0]
            if path == "/":
                out, kind = webpage.page(viewer.snapshot()), "text/html; charset=utf-8"
            elif path == webpage.FRAGMENT_PATH:
                out, kind = webpage.fragment(viewer.snapshot()), "text/html; charset=utf-8"
            elif path == webpage.STATE_PATH:
                snap = {k: v for k, v in viewer.snapshot().items() if k != "timeline_svg"}
                out, kind = json.dumps(snap, indent=1, default=str), "application/json"
            elif path == webpage.TIMELINE_PATH:
                snap = viewer.snapshot()
                out, kind = snap.get("timeline_svg", ""), "image/svg+xml"
            elif path == "/page.css":
                out, kind = webpage.CSS, "text/css; charset=utf-8"
            elif path == "/page.js":
                out, kind = webpage.SCRIPT, "text/javascript; charset=utf-8"
            else:
                out, kind = "not found\n", "text/plain; charset=utf-8"
                self._send(404, kind, out.encode(), body)
                return
            self._send(200, kind, out.encode(), body)

        def _send(self, code: int, kind: str, data: bytes, body: bool, extra: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for name, value in {**HEADERS, "Content-Type": kind, "Content-Length": str(len(data)),
                                **(extra or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            pass  # one line per poll would bury the terminal

    return Handler


def make_server(viewer: Viewer, host: str, port: int) -> ThreadingHTTPServer:
    from http.server import ThreadingHTTPServer

    address = loopback(host)
    v6 = ":" in address

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if v6 else socket.AF_INET
        daemon_threads = True

    try:
        server = Server((address, port), _handler(viewer, set()))
    except OSError as exc:
        why = "already in use (pick another, or --port 0 for a free one)" if exc.errno == errno.EADDRINUSE \
            else exc.strerror
        raise InputError(f"--port {port}: cannot listen on {address}:{port}: {why}") from None
    bound = server.server_address[1]
    shown = f"[{address}]" if v6 else address
    names = {shown, "localhost"} | ({"127.0.0.1"} if address == "127.0.0.1" else set())
    server.RequestHandlerClass = _handler(viewer, {f"{n}:{bound}" for n in names} | names)
    return server


def url(server: ThreadingHTTPServer) -> str:
    raw, port = server.server_address[:2]
    host = raw.decode() if isinstance(raw, bytes) else str(raw)
    return f"http://[{host}]:{port}/" if server.address_family == socket.AF_INET6 else f"http://{host}:{port}/"


def serve(runbook_path: Path, state_dir: Path | None, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until Ctrl-C (the KeyboardInterrupt goes on up: exit 130, like every verb)."""
    loopback(host)  # refuse a wrong address before loading anything
    viewer = Viewer(runbook_path, state_dir)
    server = make_server(viewer, host, port)
    try:
        print(f"serving {viewer.runbook.name} read-only at {url(server)} (state: {viewer.state_dir}); "
              "Ctrl-C to stop", flush=True)
        server.serve_forever(poll_interval=0.25)
    finally:
        server.server_close()
