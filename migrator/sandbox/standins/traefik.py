"""Traefik stand-in: Host-based reverse proxy to the app stand-ins, plus /ping.

Routes come from $ROUTES, a JSON object {"host": "http://service:port", ...}; a request's Host header
(without port) picks the upstream. Unknown hosts get 404, unreachable upstreams 502.
"""

import http.client
import ipaddress
import json
import os

from common import Handler, serve

ROUTES = json.loads(os.environ.get("ROUTES", "{}"))
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


def _is_address(host):
    """Health and /version answer only for requests to an address (the healthcheck), not to a name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host in ("", "localhost")


class ProxyHandler(Handler):
    def proxy(self):
        host = (self.headers.get("Host") or "").split(":", 1)[0].lower().rstrip(".")
        upstream = ROUTES.get(host)
        if upstream is None and self.path == "/ping":
            self.send_text(200, "OK")
            return
        if upstream is None and _is_address(host) and self.basic():
            return
        if upstream is None:
            self.send_text(404, "404 page not found\n")
            return
        body = self.read_body()
        target = upstream.split("//", 1)[1]
        h, _, p = target.partition(":")
        try:
            conn = http.client.HTTPConnection(h, int(p or 80), timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            headers["X-Forwarded-Host"] = self.headers.get("Host", "")
            headers["X-Forwarded-For"] = self.client_address[0]
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
        except OSError as exc:
            self.send_text(502, f"Bad Gateway: {exc}\n")
            return
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = proxy


if __name__ == "__main__":
    serve(ProxyHandler)
