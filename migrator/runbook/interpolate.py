"""`${vars.x}`, `${environment.a.b}`, `${runbook.dir}` and `${secrets.name}` in runbook values.

Secrets are substituted only at the moment a step runs (`resolve_secrets`), so that a step's digest,
the plan and the state never contain a secret value. `$${` writes a literal `${`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

REF = re.compile(r"(?<!\$)\$\{([a-z_]+)\.([A-Za-z0-9_.\-]+)\}")
# \A...\Z, not ^...$: `$` also matches before a final newline, and "${vars.x}\n" would lose it.
WHOLE = re.compile(r"\A\$\{([a-z_]+)\.([A-Za-z0-9_.\-]+)\}\Z")


class Unresolved(Exception):
    """A reference that does not resolve; `.ref` is the text inside ${...}."""

    def __init__(self, ref: str, why: str) -> None:
        super().__init__(why)
        self.ref = ref
        self.why = why


Lookup = Callable[[str, str], Any]  # (namespace, dotted key) -> value; raises Unresolved


def lookup_path(root: Any, dotted: str, namespace: str) -> Any:
    value = root
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise Unresolved(f"{namespace}.{dotted}", f"{namespace}.{dotted} is not defined")
    return value  # an explicit null stays null: optional parameters can be left unset per environment


def interpolate(value: Any, lookup: Lookup, keep: frozenset[str] = frozenset()) -> Any:
    """Substitute references in every string of `value`; namespaces in `keep` are left as they are."""
    if isinstance(value, dict):
        return {k: interpolate(v, lookup, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, lookup, keep) for v in value]
    if not isinstance(value, str):
        return value
    whole = WHOLE.match(value)
    if whole and whole.group(1) not in keep:
        # A value that is exactly one reference keeps its type (a list, a number...).
        return lookup(whole.group(1), whole.group(2))

    def sub(match: re.Match[str]) -> str:
        if match.group(1) in keep:
            return match.group(0)
        return str(lookup(match.group(1), match.group(2)))

    out = REF.sub(sub, value)
    # Unescape only on the last pass (when nothing is kept back for later).
    return out if keep else out.replace("$${", "${")


def references(value: Any, namespace: str) -> set[str]:
    """Every `${namespace.x}` key used in `value`."""
    found: set[str] = set()
    if isinstance(value, dict):
        for v in value.values():
            found |= references(v, namespace)
    elif isinstance(value, list):
        for v in value:
            found |= references(v, namespace)
    elif isinstance(value, str):
        found |= {m.group(2) for m in REF.finditer(value) if m.group(1) == namespace}
    return found
