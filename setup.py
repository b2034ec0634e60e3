"""Ships the phases and example runbooks inside the wheel as package data (migrator/builtin/), where
`builtin:` names find them (migrator/runbook/builtin.py). Everything else is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("phases", "runbooks/examples", "runbooks/sevensa.yaml")  # = migrator.runbook.builtin.SHIPPED


class BuildWithBuiltin(build_py):
    def run(self) -> None:
        super().run()
        dest = Path(self.build_lib) / "migrator" / "builtin"
        for rel in SHIPPED:
            src = HERE / rel
            for path in [src] if src.is_file() else sorted(src.rglob("*.yaml")):
                out = dest / path.relative_to(HERE)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)


setup(cmdclass={"build_py": BuildWithBuiltin})
