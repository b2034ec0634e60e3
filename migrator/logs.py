"""structlog set-up: readable on a terminal, JSON lines with --log-format json, secrets masked always."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

from migrator import redact
from migrator.progress import LiveStream, no_color


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return redact.redact_obj(dict(event_dict))  # type: ignore[no-any-return]


def configure(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    # Through the live display's console while one is on screen (progress.LiveStream), so a log line
    # lands above the bar instead of tearing it; sys.stderr looked up at each write unless given.

    out = LiveStream(stream)
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty() and not no_color())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get(**bind: Any) -> Any:
    return structlog.get_logger("migrator").bind(**bind)
