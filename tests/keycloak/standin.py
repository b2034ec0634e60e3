"""Runs the sandbox's Keycloak stand-in (migrator/sandbox/standins/keycloak.py, serving from its real
PostgreSQL) on 127.0.0.1 instead of 0.0.0.0, with its environment read from an env file.

SIGHUP re-executes it, so it re-reads the env file: what a container restart does for KC_HOSTNAME.
Usage: python standin.py PORT ENV_FILE
"""

from __future__ import annotations

import os
import signal
import sys
from http.server import ThreadingHTTPServer
from pathlib import Path

STANDINS = Path(__file__).resolve().parents[2] / "migrator" / "sandbox" / "standins"


class Restart(Exception):
    pass


def main() -> None:
    port, env_file = int(sys.argv[1]), Path(sys.argv[2])
    for line in env_file.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            os.environ[key.strip()] = value.strip()
    sys.path.insert(0, str(STANDINS))
    import keycloak  # the sandbox's stand-in; reads KC_* at import

    httpd = ThreadingHTTPServer(("127.0.0.1", port), keycloak.KeycloakHandler)
    httpd.daemon_threads = True

    def hup(signum: int, frame: object) -> None:
        raise Restart

    def term(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGHUP, hup)
    signal.signal(signal.SIGTERM, term)
    try:
        httpd.serve_forever(poll_interval=0.1)
    except Restart:
        httpd.server_close()
        os.execv(sys.executable, [sys.executable, *sys.argv])
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
