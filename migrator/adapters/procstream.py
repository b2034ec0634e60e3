"""A source tool's byte stream, wherever it runs: a local subprocess, or a `docker exec` on the VPS.

The database adapters (pgsource for Postgres, mysql for MySQL/MariaDB) run the server's own tools next
to it and read their output through this one interface.
"""

from __future__ import annotations

import subprocess
import threading
from typing import Any, Protocol


class ProcStream(Protocol):
    def read(self, n: int = -1) -> bytes: ...

    def write(self, data: bytes) -> int: ...

    def close_stdin(self) -> None: ...

    def wait(self) -> int: ...

    def stderr_tail(self) -> bytes: ...


class LocalStream:
    """A local subprocess's stdout/stdin, with the last 4 KiB of its stderr kept for the error message."""

    def __init__(self, proc: subprocess.Popen[bytes], wait_timeout: float = 300) -> None:
        self.proc = proc
        self.wait_timeout = wait_timeout
        self._err = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err += line
            del self._err[:-4096]

    def read(self, n: int = -1) -> bytes:
        out: Any = self.proc.stdout  # a BufferedReader: read1 gives what is there (a short read)
        return bytes(out.read() if n < 0 else out.read1(n))

    def write(self, data: bytes) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()  # a conversation (a kept-open psql) must not wait on a buffer
        return len(data)

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    def wait(self) -> int:
        rc = self.proc.wait(timeout=self.wait_timeout)
        self._reader.join(timeout=5)
        return rc

    def stderr_tail(self) -> bytes:
        return bytes(self._err)


class ExecStream:
    """A `docker exec` stream of the Docker adapter, typed as a ProcStream."""

    def __init__(self, inner: Any, wait_timeout: float | None = None) -> None:
        self.inner = inner
        self.wait_timeout = wait_timeout

    def read(self, n: int = -1) -> bytes:
        return bytes(self.inner.read(n))

    def write(self, data: bytes) -> int:
        return int(self.inner.write(data))

    def close_stdin(self) -> None:
        self.inner.close_stdin()

    def wait(self) -> int:
        if self.wait_timeout is None:
            return int(self.inner.exit_code())
        return int(self.inner.exit_code(timeout=self.wait_timeout))

    def stderr_tail(self) -> bytes:
        return bytes(self.inner.stderr_tail())
