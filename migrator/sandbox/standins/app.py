"""App stand-in: answers /health, /ready, /version (with "standin": true) and a small page at /."""

from common import SERVICE, Handler, serve


class AppHandler(Handler):
    def do_GET(self):
        if self.basic():
            return
        if self.path.split("?", 1)[0] == "/":
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
