"""Prometheus stand-in: /api/v1/targets reports each target up or down by probing it now.

Targets come from $TARGETS, a JSON list of {"job": ..., "url": "http://service:port/path"}.
"""

import json
import os
import time
import urllib.request

from common import Handler, serve

TARGETS = json.loads(os.environ.get("TARGETS", "[]"))


def probe(url):
    start = time.time()
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            ok = 200 <= resp.status < 300
            err = "" if ok else f"HTTP {resp.status}"
    except Exception as exc:  # noqa: BLE001
        ok, err = False, str(exc)
    return ok, err, time.time() - start


class PromHandler(Handler):
    def do_GET(self):
        if self.basic():
            return
        path = self.path.split("?", 1)[0]
        if path == "/api/v1/targets":
            active = []
            for t in TARGETS:
                ok, err, took = probe(t["url"])
                host = t["url"].split("//", 1)[1].split("/", 1)[0]
                active.append({
                    "discoveredLabels": {"__address__": host, "job": t["job"]},
                    "labels": {"instance": host, "job": t["job"]},
                    "scrapePool": t["job"], "scrapeUrl": t["url"], "globalUrl": t["url"],
                    "lastError": err, "lastScrape": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "lastScrapeDuration": took, "health": "up" if ok else "down",
                })
            self.send_json(200, {"status": "success", "data": {"activeTargets": active, "droppedTargets": []}})
            return
        self.send_json(404, {"status": "error", "error": "not found"})


if __name__ == "__main__":
    serve(PromHandler)
