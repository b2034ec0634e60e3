"""Every secret value the process has resolved, and the masking of them wherever text goes out.

Logs, the journal, the state file and error messages all pass through `redact` (or `redact_obj`).
Values shorter than 4 characters are not masked (they would mask unrelated text); runbook validation
refuses such secrets.
"""

from __future__ import annotations

import base64
import threading
import urllib.parse
from typing import Any

MASK = "***"
_lock = threading.Lock()
_values: set[str] = set()


def register(value: str) -> None:
    """Remember a secret value (and its common encodings) so that it is masked from now on."""
    if len(value) < 4:
        return
    forms = {value, urllib.parse.quote(value, safe=""), base64.b64encode(value.encode()).decode()}
    with _lock:
        _values.update(f for f in forms if len(f) >= 4)


def known() -> frozenset[str]:
    with _lock:
        return frozenset(_values)


def redact(text: str) -> str:
    values = known()
    if not values or not text:
        return text
    # Longest first, so a value containing another is masked whole.
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_obj(obj: Any) -> Any:
    """Mask secrets in every string of a JSON-like structure (keys included)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact_obj(k): redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj


def clear() -> None:
    """For tests: forget every value."""
    with _lock:
        _values.clear()
