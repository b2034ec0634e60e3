"""The local sandbox: the Sevensa platform in miniature on real servers (dockerd + Compose behind sshd,
PostgreSQL, OpenBao, BIND), plus the target data plane, for the migrator's rehearsals and tests.

Public API::

    up(dir=None, scale=1, log=print) -> SandboxInfo     # idempotent
    down(dir=None, log=print) -> None                   # idempotent, leaves nothing behind
    status(dir=None) -> SandboxInfo                     # .to_json() / .to_dict()

``dir`` defaults to ``<repo>/state/sandbox`` (or ``$MIGRATE_SANDBOX_DIR``). Fixed ports: ``layout``.
"""

from .layout import default_dir
from .platform import SandboxInfo, down, leftovers, status, up
from .proc import SandboxError

__all__ = ["SandboxError", "SandboxInfo", "default_dir", "down", "leftovers", "status", "up"]
