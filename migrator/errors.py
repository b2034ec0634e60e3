"""The error families of migrator, and the exit codes they map to at the top.

Temporary errors are retried (with backoff) within a step's retries and timeout; permanent errors stop
the run. Input errors are the user's mistakes: one line each, exit 2, never a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOCKED = 3
EXIT_PLAN_INCOMPLETE = 4  # `migrate plan`: printed, but some steps cannot be planned
EXIT_INTERRUPTED = 130


def one_line(text: str) -> str:
    """`text` with its line breaks (and other control characters) escaped: one line, always."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


class MigratorError(Exception):
    """Base of every error the CLI turns into one `FAILED: ...` line and an exit code."""

    exit_code = EXIT_FAILED


class PermanentError(MigratorError):
    """The step cannot succeed by retrying: the run stops and the state says why."""


class TemporaryError(MigratorError):
    """Worth another try: retried with exponential backoff and jitter. `delay` overrides the backoff."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class GateNotReady(TemporaryError):
    """A health gate is not (yet) satisfied; retried until the gate's deadline."""


class InputError(MigratorError):
    """Bad input (runbook, arguments, state file): one line per problem, exit 2."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(one_line(message))
        # One line each, whatever a value quoted in them holds (a newline in a key, a path...).
        self.problems = [one_line(p) for p in (problems or [message])]


class LockedError(MigratorError):
    """Another migrate process holds the runbook's lock."""

    exit_code = EXIT_LOCKED


class RefusedError(MigratorError):
    """The engine refuses an operation on purpose (rollback with dependents, point of no return...)."""

    exit_code = EXIT_FAILED


class Interrupted(MigratorError):
    """Ctrl-C or SIGTERM: the running step is recorded as interrupted."""

    exit_code = EXIT_INTERRUPTED
