"""App stand-in: answers /health, /ready, /version (with "standin": true) and a small page at /.

n8n and Grafana stand-ins also read their data volume as the real applications do (n8n's
``database.sqlite`` in N8N_USER_FOLDER, Grafana's ``grafana.db`` in GF_PATHS_DATA) and list what is in it
through the applications' own API paths: ``/api/v1/workflows`` and ``/api/search``. A stand-in whose
volume holds no database answers 503 there, as the real application would fail to start."""

import os
import sqlite3

from common import SERVICE, Handler, serve

N8N_DIR = os.environ.get("N8N_USER_FOLDER")
GRAFANA_DIR = os.environ.get("GF_PATHS_DATA")


def _rows(path, sql):
    if not os.path.isfile(path):
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


class AppHandler(Handler):
    def do_GET(self):
        if self.basic():
            return
        path = self.path.split("?", 1)[0]
        if N8N_DIR and path == "/api/v1/workflows":
            rows = _rows(os.path.join(N8N_DIR, "database.sqlite"),
                         "SELECT id, name, active, versionId FROM workflow_entity ORDER BY id")
            if rows is None:
                self.send_json(503, {"error": f"no database in {N8N_DIR}"})
                return
            self.send_json(200, {"data": [{"id": r[0], "name": r[1], "active": bool(r[2]), "versionId": r[3]}
                                          for r in rows], "nextCursor": None})
            return
        if GRAFANA_DIR and path == "/api/search":
            rows = _rows(os.path.join(GRAFANA_DIR, "grafana.db"),
                         "SELECT uid, title, version FROM dashboard WHERE is_folder = 0 ORDER BY uid")
            if rows is None:
                self.send_json(503, {"error": f"no database in {GRAFANA_DIR}"})
                return
            self.send_json(200, [{"uid": r[0], "title": r[1], "version": r[2], "type": "dash-db"} for r in rows])
            return
        if path == "/":
            self.send_text(200, f"<html><body><h1>{SERVICE}</h1><p>sevensa sandbox stand-in</p></body></html>",
                           "text/html; charset=utf-8")
            return
        self.send_json(404, {"error": "not found", "service": SERVICE})

    do_HEAD = do_GET

    def do_POST(self):
        body = self.read_body()
        if self.basic():
            return
        self.send_json(200, {"service": SERVICE, "received": len(body)})


if __name__ == "__main__":
    serve(AppHandler)
