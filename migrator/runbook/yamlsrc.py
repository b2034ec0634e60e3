"""YAML loading that remembers where every value came from, for `FILE:LINE: field: problem` errors.

The loader takes only what the runbook format documents and refuses the rest in one line, before
building anything: no aliases (an alias bomb of a few hundred bytes expands to gigabytes), nesting at
most MAX_DEPTH levels (PyYAML's composer recurses), only the core tags (str, int, float, bool, null,
seq, map), scalar keys only, no NUL character, at most MAX_BYTES of regular-file text. A scalar that
does not read as its type (`!!float abc`, a plain `2020-13-45` taken for a timestamp) is one line too.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from migrator.errors import InputError

Loc = tuple[str | int, ...]

MAX_DEPTH = 40
MAX_BYTES = 4 * 1024 * 1024
MAX_EVENTS = 400_000
_CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset({"!", *(f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map"))})


@dataclass
class Located:
    """A parsed YAML document with the line of every mapping key and sequence item."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int:
        """The line of the deepest node of `loc` that exists (1-based)."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1

    def where(self, loc: Loc) -> str:
        return f"{self.path}:{self.line(loc)}"


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc) or "(top)"


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class _Frame:
    """One open mapping or sequence in the event pre-pass: where we are inside it."""

    __slots__ = ("is_map", "index", "key", "want_key")

    def __init__(self, is_map: bool) -> None:
        self.is_map = is_map
        self.index = 0
        self.key: str | int = 0
        self.want_key = True


def _prepass(text: str, path: Path) -> None:
    """Walk the event stream (iteratively: no recursion) and refuse what the format does not take."""
    stack: list[_Frame] = []

    def loc() -> Loc:
        # A mapping still waiting for its key adds nothing to the path yet.
        return tuple(fr.key for fr in stack if not (fr.is_map and fr.want_key))

    def refuse(event: yaml.Event, what: str, at: Loc | None = None) -> InputError:
        line = event.start_mark.line + 1 if event.start_mark else 1
        return InputError(f"{path}:{line}: {_dotted(loc() if at is None else at)}: {what}")

    def node_started(event: yaml.Event, is_key: bool) -> None:
        # Called for every node (scalar, alias, collection start) with the frame it belongs to on top.
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in ALLOWED_TAGS:
            raise refuse(event, f"YAML tag {_short_tag(tag)} is not supported (the format takes plain values)")
        if isinstance(event, yaml.AliasEvent):
            raise refuse(event, f"YAML aliases (*{event.anchor}) are not supported; write the value out")
        if is_key and not isinstance(event, yaml.ScalarEvent):
            raise refuse(event, "complex mapping keys (? [a, b]) are not supported; keys are plain strings")

    count = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            count += 1
            if count > MAX_EVENTS:
                raise refuse(event, f"more than {MAX_EVENTS} YAML nodes; not a runbook")
            if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                stack.pop()
                if stack:
                    _advance(stack[-1])
                continue
            if not isinstance(event, yaml.ScalarEvent | yaml.AliasEvent | yaml.CollectionStartEvent):
                continue  # stream and document events
            top = stack[-1] if stack else None
            is_key = bool(top and top.is_map and top.want_key)
            node_started(event, is_key)
            if isinstance(event, yaml.ScalarEvent):
                if "\x00" in event.value:
                    raise refuse(event, "a NUL character is not allowed in a value")
                if top is not None:
                    if is_key:
                        top.key = event.value
                        top.want_key = False
                    else:
                        _advance(top)
                continue
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise refuse(event, f"nested more than {MAX_DEPTH} levels deep")
                stack.append(_Frame(isinstance(event, yaml.MappingStartEvent)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise InputError(f"{path}:{line}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(0, exc.position)) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise InputError(f"{path}:{line}: invalid YAML: special character {char!r} is not allowed") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {exc}") from None


def _advance(frame: _Frame) -> None:
    """A value (scalar or whole collection) of `frame` is complete: move to its next slot."""
    if frame.is_map:
        frame.want_key = True
    else:
        frame.index += 1
        frame.key = frame.index


def _construct(node: yaml.Node, loc: Loc, path: Path) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, KeyError, TypeError, OverflowError, ArithmeticError):
        tag = _short_tag(node.tag) if node.tag else "its type"
        value = node.value if isinstance(node.value, str) else "?"
        if len(value) > 40:
            value = value[:37] + "..."
        raise InputError(f"{path}:{node.start_mark.line + 1}: {_dotted(loc)}: {value!r} is not a valid "
                         f"{tag.removeprefix('!!')} value") from None
    finally:
        loader.dispose()


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: Path, depth: int = 0) -> Any:
    # Recursive, but the pre-pass bounded the depth to MAX_DEPTH.
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise InputError(f"{path}:{key_node.start_mark.line + 1}: {_dotted(loc)}: "
                                 "YAML merge keys (<<) are not supported")
            if not isinstance(key_node, yaml.ScalarNode):  # the pre-pass refuses these already
                raise InputError(f"{path}:{key_node.start_mark.line + 1}: {_dotted(loc)}: complex mapping keys "
                                 "are not supported")
            key = key_node.value
            if key in out:
                raise InputError(f"{path}:{key_node.start_mark.line + 1}: {_dotted((*loc, key))}: duplicate key")
            lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _walk(value_node, (*loc, key), lines, path, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*loc, i), lines, path, depth + 1) for i, item in enumerate(node.value)]
    return _construct(node, loc, path)


def _read(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: not a regular file")
        if st.st_size > MAX_BYTES:
            raise InputError(f"{path}: {st.st_size} bytes; a runbook or phase file is at most {MAX_BYTES}")
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}:{line}: not UTF-8 text") from None


def load_yaml(path: Path) -> Located:
    """Parse one YAML file; every refusal is one InputError line naming file, line and field."""
    if "\x00" in str(path):
        raise InputError(f"{str(path)!r}: a NUL character is not allowed in a path")
    text = _read(path)
    _prepass(text, path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise InputError(f"{path}:{line}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {exc}") from None
    lines: dict[Loc, int] = {}
    data = None if node is None else _walk(node, (), lines, path)
    return Located(path=path, data=data, lines=lines)
