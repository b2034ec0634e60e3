"""The one env-file reader (runbook secrets, the sandbox's credentials, the target Keycloak's environment).

python-dotenv's parser with Docker Compose's semantics: ``export KEY=value``; ``#`` comments (a ``#``
after whitespace ends an unquoted value); single quotes literal; double quotes with escapes; quoted
values may span lines; ``${VAR}``/``${VAR:-default}`` expanded in unquoted and double-quoted values
(not in single-quoted ones, as in Compose) from the keys above it in the same file only, never from
this process's environment, so a file reads the same whoever reads it. A bare ``KEY`` without ``=``
is ignored; a line that cannot be parsed is an error naming its line (never its content: it may hold
a secret).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from dotenv.parser import parse_stream
from dotenv.variables import parse_variables

_SINGLE_QUOTED = re.compile(r"^\s*(?:export\s+)?(?:'[^']*'|[^=\s]+)\s*=\s*'", re.DOTALL)


class EnvFileError(ValueError):
    """An env file that cannot be read; the message names the line, never its content."""


def parse_env(text: str, source: str = "env file") -> dict[str, str]:
    """KEY -> value of an env file's text (the dialect is in the module docstring)."""
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line
            raise EnvFileError(f"{source}:{line}: not KEY=value (expected e.g. NAME=value, "
                               "export NAME=value or NAME=\"quoted value\")")
        if binding.key is None or binding.value is None:
            continue
        value = binding.value
        if not _SINGLE_QUOTED.match(binding.original.string):
            value = "".join(atom.resolve(dict(values)) for atom in parse_variables(value))
        values[binding.key] = value
    return values


def read_env_file(path: Path) -> dict[str, str]:
    """KEY -> value of the env file at ``path`` (UTF-8)."""
    path = Path(path)
    return parse_env(path.read_text(encoding="utf-8"), str(path))
