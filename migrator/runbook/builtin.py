"""`builtin:` paths: the phases and example runbooks that ship with migrate, wherever it is installed.

    phases: [builtin:phases/1-cluster-setup.yaml, ...]
    migrate plan --runbook builtin:runbooks/examples/local.yaml

In a wheel they are package data under ``migrator/builtin/`` (setup.py's build step copies the
repository's ``phases/`` and ``runbooks/examples/`` there); in a source checkout (an editable install,
or PYTHONPATH) the same names are read from the checkout itself. Both hold the same tree.
"""

from __future__ import annotations

from pathlib import Path

PREFIX = "builtin:"
#: what the wheel ships, relative to the repository (and to migrator/builtin/ in the wheel)
SHIPPED = ("phases", "runbooks/examples", "runbooks/sevensa.yaml")

_PACKAGE = Path(__file__).resolve().parents[1]


def root() -> Path:
    """Where builtin: names point: the installed package data, else the source checkout."""
    packaged = _PACKAGE / "builtin"
    return packaged if packaged.is_dir() else _PACKAGE.parent


def packaged() -> bool:
    """Whether migrate runs from an installed wheel (its package data), not from a checkout."""
    return (_PACKAGE / "builtin").is_dir()


def is_builtin(ref: str | Path) -> bool:
    return str(ref).startswith(PREFIX)


def resolve(ref: str | Path, base: Path) -> Path:
    """A runbook's path: `builtin:NAME` under root(), else relative to `base` (the runbook's folder)."""
    text = str(ref)
    if not text.startswith(PREFIX):
        return (base / text).resolve()
    name = text[len(PREFIX):].lstrip("/")
    if ".." in Path(name).parts or not any(name == s or name.startswith(s + "/") for s in SHIPPED):
        raise ValueError(f"{text}: not a builtin file (builtin: names start with {' or '.join(SHIPPED)})")
    return (root() / name).resolve()


def available() -> list[str]:
    """Every builtin: name (for messages and `migrate init`)."""
    base = root()
    files = [p for s in SHIPPED for p in ([base / s] if s.endswith(".yaml") else (base / s).rglob("*.yaml"))]
    return sorted(PREFIX + str(p.relative_to(base)) for p in files if p.is_file())
