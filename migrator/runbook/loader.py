"""Load a runbook and its phase files, interpolate, and validate everything before anything runs.

Every problem is reported, not just the first, each as `FILE:LINE: path.to.field: what is wrong`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from migrator.errors import InputError
from migrator.runbook import builtin
from migrator.runbook import secrets as secretmod
from migrator.runbook import tsig as tsigmod
from migrator.runbook.interpolate import Unresolved, interpolate, lookup_path, references
from migrator.runbook.model import (
    Catalogue,
    EnvSecret,
    FileSecret,
    PhaseFile,
    Runbook,
    RunbookFile,
    Step,
    StepSpec,
)
from migrator.runbook.yamlsrc import Loc, Located, load_yaml

SECRET_PLACEHOLDER = "secret-value-placeholder"


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc) or "(top)"


def pydantic_problems(src: Located, exc: ValidationError, prefix: Loc = ()) -> list[str]:
    out = []
    for err in exc.errors():
        loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.endswith("]")))
        # Union members show up as extra loc parts ('EnvSecret'...); keep the field path readable.
        loc = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper()))
        loc = tuple("with" if p == "with_" else p for p in loc)
        full = (*prefix, *loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required field is missing"
        out.append(f"{src.where(full)}: {_dotted(full)}: {msg}")
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Validator:
    def __init__(self, path: Path, catalogue: Catalogue, *, check_secrets: bool) -> None:
        self.path = path
        self.catalogue = catalogue
        self.check_secrets = check_secrets
        self.problems: list[str] = []

    def fail(self, where: str, field: str, msg: str) -> None:
        self.problems.append(f"{where}: {field}: {msg}")

    def load(self) -> Runbook:
        src = load_yaml(self.path)
        if not isinstance(src.data, dict):
            raise InputError(f"{self.path}:1: (top): expected a mapping with name, phases, environment...")
        raw = src.data
        try:
            head = RunbookFile.model_validate({**raw, "environment": {}})
        except ValidationError as exc:
            self.problems += pydantic_problems(src, exc)
            raise InputError("invalid runbook", self.problems) from None

        base = self.path.parent
        ctx: dict[str, Any] = {"runbook": {"dir": str(base.resolve()), "name": head.name}}

        def lookup(ns: str, key: str) -> Any:
            if ns not in ctx:
                raise Unresolved(f"{ns}.{key}", f"unknown namespace {ns!r} (expected vars, environment, runbook, secrets)")
            return lookup_path(ctx[ns], key, ns)

        # vars may use ${runbook.*} only; then environment and steps may use vars.
        try:
            ctx["vars"] = interpolate(head.vars, lookup)
        except Unresolved as exc:
            self.fail(src.where(("vars",)), "vars", exc.why)
            ctx["vars"] = head.vars
        env_raw = raw.get("environment") or {}
        try:
            env_interp = interpolate(env_raw, lookup)
        except Unresolved as exc:
            self.fail(src.where(("environment",)), "environment", exc.why)
            env_interp = {}
        try:
            rb_file = RunbookFile.model_validate({**raw, "environment": env_interp})
        except ValidationError as exc:
            self.problems += pydantic_problems(src, exc)
            rb_file = head
        ctx["environment"] = rb_file.environment.model_dump(mode="json") if rb_file is not head else env_interp

        self._check_secrets(src, rb_file)
        if rb_file.production:
            self._refuse_insecure(src, ("environment",), env_interp)
        steps, names = self._load_phases(src, rb_file, lookup)
        self._check_graph(steps)
        if self.problems:
            raise InputError("invalid runbook", self.problems)
        digest = _digest([s.digest for s in steps] + [rb_file.model_dump(mode="json", exclude={"description"})])
        where = {f"{section}.{i}": src.where(("coverage", section, i))
                 for section in ("map", "exclude") for i in range(len(getattr(rb_file.coverage, section)))}
        return Runbook(path=self.path, file=rb_file, steps=steps, digest=digest, phase_names=names,
                       coverage_where=where)

    def _refuse_insecure(self, src: Located, prefix: Loc, value: Any) -> None:
        """A production runbook verifies TLS everywhere: `tls_verify: false` is refused (give ca_file)."""
        stack: list[tuple[Loc, Any]] = [(prefix, value)]
        while stack:
            loc, item = stack.pop()
            if isinstance(item, dict):
                for key, sub in item.items():
                    if key == "tls_verify" and sub is False:
                        self.fail(src.where((*loc, key)), _dotted((*loc, key)),
                                  "tls_verify: false is refused on a production runbook (production: true); "
                                  "give the server's CA in ca_file instead")
                    else:
                        stack.append(((*loc, key), sub))
            elif isinstance(item, list):
                stack.extend(((*loc, i), sub) for i, sub in enumerate(item))

    def _check_secrets(self, src: Located, rb: RunbookFile) -> None:
        resolved: dict[str, str] = {}
        for name, ref in rb.secrets.items():
            if not self.check_secrets or not isinstance(ref, EnvSecret | FileSecret):
                continue
            try:
                resolved[name] = secretmod.resolve_local(ref, self.path.parent)
            except ValueError as exc:
                self.fail(src.where(("secrets", name)), f"secrets.{name}", f"cannot resolve: {exc}")
        self._check_tsig(src, rb, resolved)

    def _check_tsig(self, src: Located, rb: RunbookFile, resolved: dict[str, str]) -> None:
        """The DNS key read now, so a wrong one fails here in one line, not as BADSIG at the cutover."""
        dns_cfg = rb.environment.dns
        if dns_cfg is None:
            return
        # An HTTP API provider's credential: the secret it names must exist (its value is checked by the API).
        api_secret = {"transip": dns_cfg.transip and ("transip.private_key", dns_cfg.transip.private_key),
                      "cloudflare": dns_cfg.cloudflare and ("cloudflare.token", dns_cfg.cloudflare.token)}
        named = api_secret.get(dns_cfg.provider)
        if named and named[1] not in rb.secrets:
            self.fail(src.where(("environment", "dns", named[0].split(".")[0])), f"environment.dns.{named[0]}",
                      f"secret {named[1]!r} is not defined in the runbook's secrets")
        tsig = dns_cfg.tsig
        if tsig is None:
            return
        where = src.where(("environment", "dns", "tsig"))
        if tsig.secret not in rb.secrets:
            self.fail(where, "environment.dns.tsig.secret",
                      f"secret {tsig.secret!r} is not defined in the runbook's secrets")
            return
        if tsig.algorithm and tsig.algorithm.lower() not in tsigmod.ALGORITHMS:
            self.fail(where, "environment.dns.tsig.algorithm",
                      f"unknown {tsig.algorithm!r} (known: {', '.join(tsigmod.ALGORITHMS)})")
            return
        value = resolved.get(tsig.secret)
        if value is None:
            return  # not resolvable here (an OpenBao reference): checked the same way when first used
        try:
            tsigmod.resolve(value, tsig.name, tsig.algorithm)
        except tsigmod.TSIGKeyError as exc:
            self.fail(where, "environment.dns.tsig.secret", f"secret {tsig.secret!r}: {exc}")

    def _load_phases(self, src: Located, rb: RunbookFile, lookup: Any) -> tuple[list[Step], dict[int, str]]:
        types = self.catalogue
        steps: list[Step] = []
        names: dict[int, str] = {}
        seen: dict[str, str] = {}

        for i, rel in enumerate(rb.phases):
            try:
                ppath = builtin.resolve(rel, self.path.parent)
                psrc = load_yaml(ppath)
            except ValueError as exc:
                self.problems.append(f"{src.where(('phases', i))}: phases.{i}: {exc}")
                continue
            except InputError as exc:
                self.problems.append(f"{src.where(('phases', i))}: phases.{i}: {exc}")
                continue
            except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable directory...
                self.problems.append(f"{src.where(('phases', i))}: phases.{i}: cannot use {rel!r}: {exc}")
                continue
            parsed = self._phase(psrc, lookup)
            if parsed is None:
                continue
            phase, specs = parsed
            if phase.phase in names:
                self.fail(psrc.where(("phase",)), "phase", f"phase {phase.phase} is defined twice")
            names[phase.phase] = phase.name
            for j, spec in specs:
                loc: Loc = ("steps", j)
                where = psrc.where((*loc, "id"))
                if spec.id in seen:
                    self.fail(where, f"steps.{j}.id", f"duplicate step id {spec.id!r} (first at {seen[spec.id]})")
                    continue
                seen[spec.id] = where
                raw_with = (psrc.data["steps"][j] or {}).get("with") or {}
                params, model = self._params(psrc, loc, spec, raw_with, rb, lookup, types)
                if rb.production:
                    self._refuse_insecure(psrc, (*loc, "with"), params)
                    self._refuse_insecure(psrc, (*loc, "gate"), spec.gate.model_dump(exclude_defaults=True))
                digest = _digest({"uses": spec.uses, "with": params, "gate": spec.gate.model_dump(),
                                  "rollback": spec.rollback, "ponr": spec.point_of_no_return})
                steps.append(Step(spec=spec, phase=phase.phase, phase_name=phase.name, source=where,
                                  params_raw=params, digest=digest, step_type=types.get(spec.uses), params=model))
        steps.sort(key=lambda s: s.phase)  # stable: file order within a phase
        return steps, names

    def _phase(self, psrc: Located, lookup: Any) -> tuple[PhaseFile, list[tuple[int, StepSpec]]] | None:
        """Validate the phase header and each step on its own, so every bad step is reported."""
        data = psrc.data
        if not isinstance(data, dict):
            self.problems.append(f"{psrc.where(())}: (top): expected a mapping with phase, name, steps")
            return None
        raw_steps = data.get("steps")
        if not isinstance(raw_steps, list):
            self.problems.append(f"{psrc.where(('steps',))}: steps: expected a list of steps")
            return None
        try:
            header = PhaseFile.model_validate({**data, "steps": []})
        except ValidationError as exc:
            self.problems += pydantic_problems(psrc, exc)
            return None
        good: list[tuple[int, StepSpec]] = []
        for j, raw in enumerate(raw_steps):
            try:
                # Gates, retries and timeouts may use ${vars.x} too (a watch period per environment);
                # `with` is interpolated later, keeping secrets back.
                if isinstance(raw, dict):
                    raw = {k: v if k == "with" else interpolate(v, lookup) for k, v in raw.items()}
            except Unresolved as exc:
                self.fail(psrc.where(("steps", j)), f"steps.{j}", exc.why)
                continue
            try:
                good.append((j, StepSpec.model_validate(raw)))
            except ValidationError as exc:
                self.problems += pydantic_problems(psrc, exc, prefix=("steps", j))
        return header, good

    def _params(self, psrc: Located, loc: Loc, spec: StepSpec, raw_with: dict[str, Any], rb: RunbookFile,
                lookup: Any, types: Catalogue) -> tuple[dict[str, Any], BaseModel | None]:
        """The interpolated `with:` (secrets still as references), and its Params model when it holds no
        secret reference. Checked here once: the model, the argv fields, and the step type's own
        `check_params` against the rest of the runbook."""
        try:
            params = interpolate(raw_with, lookup, keep=frozenset({"secrets"}))
        except Unresolved as exc:
            self.fail(psrc.where((*loc, "with")), f"{_dotted(loc)}.with", exc.why)
            return dict(raw_with), None
        for name in sorted(references(params, "secrets")):
            if name not in rb.secrets:
                self.fail(psrc.where((*loc, "with")), f"{_dotted(loc)}.with",
                          f"secret {name!r} is not defined in the runbook's secrets")
        cls = types.get(spec.uses)
        if cls is None:
            close = difflib.get_close_matches(spec.uses, list(types), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(types))}"
            self.fail(psrc.where((*loc, "uses")), f"{_dotted(loc)}.uses", f"unknown step type {spec.uses!r}{hint}")
            return params, None
        for name in cls.argv_fields:
            if references(params.get(name), "secrets"):
                self.fail(psrc.where((*loc, "with", name)), f"{_dotted(loc)}.with.{name}",
                          "secrets must not appear in a command line (argv is visible to every user); "
                          "pass them in env: and read $NAME in the command")
        probe = interpolate(params, lambda ns, key: SECRET_PLACEHOLDER)
        try:
            model = cls.Params.model_validate(probe)
        except ValidationError as exc:
            self.problems += pydantic_problems(psrc, exc, prefix=(*loc, "with"))
            return params, None
        for name, why in cls.check_params(model, rb):
            self.fail(psrc.where((*loc, "with", name)), f"{_dotted(loc)}.with.{name}", why)
        # With secrets, the probe holds placeholders: the real model is made at run time.
        return params, (None if references(params, "secrets") else model)

    def _check_graph(self, steps: list[Step]) -> None:
        by_id = {s.id: s for s in steps}
        for s in steps:
            for need in s.spec.needs:
                if need not in by_id:
                    close = difflib.get_close_matches(need, list(by_id), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    self.fail(s.source, f"{s.id}.needs", f"unknown step {need!r}{hint}")
                elif by_id[need].phase > s.phase:
                    self.fail(s.source, f"{s.id}.needs",
                              f"{need!r} is in a later phase ({by_id[need].phase} > {s.phase})")
        # Cycle detection by depth-first search over `needs`, with an explicit stack (a chain of
        # thousands of steps must not reach Python's recursion limit).
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        for s in steps:
            if s.id in state:
                continue
            state[s.id] = 1
            path: list[str] = [s.id]
            stack: list[tuple[str, int]] = [(s.id, 0)]
            while stack:
                node, i = stack[-1]
                needs = by_id[node].spec.needs
                if i >= len(needs):
                    stack.pop()
                    path.pop()
                    state[node] = 2
                    continue
                stack[-1] = (node, i + 1)
                need = needs[i]
                if need not in by_id:
                    continue
                if state.get(need) == 1:
                    cycle = path[path.index(need):] + [need]
                    self.fail(by_id[node].source, f"{node}.needs", f"dependency cycle: {' -> '.join(cycle)}")
                elif need not in state:
                    state[need] = 1
                    path.append(need)
                    stack.append((need, 0))


def load_runbook(path: Path, catalogue: Catalogue, *, check_secrets: bool = True) -> Runbook:
    """Load and validate against the step types in `catalogue`; raises InputError listing every problem.
    (migrator.steps.catalogue.load_runbook passes the catalogue of every step type.)"""
    return _Validator(path, catalogue, check_secrets=check_secrets).load()


def params_model(step: Step, resolve_secret: Any) -> BaseModel:
    """The step's validated Params with secrets substituted (in memory only, never persisted).

    Without secrets, the model the loader validated (a copy: a step cannot change another's); with
    them, validated here with the values resolved now, which exist only at run time."""
    if step.params is not None:
        return step.params.model_copy(deep=True)  # type: ignore[no-any-return]
    cls = step.step_type

    def lookup(ns: str, key: str) -> Any:
        if ns != "secrets":
            raise InputError(f"{step.source}: {step.id}.with: unresolved reference ${{{ns}.{key}}}")
        return resolve_secret(key)

    values = interpolate(step.params_raw, lookup)
    return cls.Params.model_validate(values)
