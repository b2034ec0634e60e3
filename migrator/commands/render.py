"""`migrate render --out DIR`: the five Helm charts and the ArgoCD Applications, from the manifests and the
runbooks' variables that the migration applies, then linted and rendered by the real Helm engine and
compared, object by object, with what the migration applies. A chart that Helm would render differently
from the migration is never written as a success.

DIR/charts/<chart>/ and DIR/argocd/<environment>/<chart>.yaml are replaced whole (built beside them,
then renamed), and only when what is there was written by `migrate render` itself.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.errors import InputError, PermanentError
from migrator.manifests import argocd, charts, velero_chart
from migrator.manifests import render as manifests
from migrator.runbook.model import Runbook

Say = Callable[[str], None]


@dataclass
class Environment:
    name: str
    runbook: Runbook
    vars: dict[str, Any]
    expected: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Rendered:
    """What one render produced (for the command's summary and the tests)."""

    out: Path
    charts: list[str]
    environments: list[str]
    files: dict[str, str]
    applications: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # environment -> Applications
    # environment -> the objects the migration's manifest steps apply there (their own templates())
    expected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)  # environment -> manifest variables
    helm: str = ""
    compared: int = 0
    # environment -> the objects only the charts have (Velero's Schedule and BackupStorageLocation)
    chart_only: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _uses(rb: Runbook) -> list[Any]:
    from migrator.steps.kube import manifest_uses

    try:
        uses = manifest_uses(rb)
    except PermanentError as exc:
        raise InputError(f"{rb.path}: {exc}") from None
    for use in uses:
        if use.vars or use.namespaces is not None:
            raise InputError(f"{rb.path}: step {use.step_id}: its own `vars:` or `namespaces:` cannot be expressed "
                             "in the charts (they hold one value per variable and environment); move them to the "
                             "runbook's vars")
    return uses


def sources(uses: list[Any]) -> list[charts.Source]:
    """Every chart document once, in the order the steps apply them."""
    out: list[charts.Source] = []
    seen: set[str] = set()
    for use in uses:
        for doc in use.documents:
            if doc.origin in seen:
                continue
            seen.add(doc.origin)
            out += [charts.Source(doc.name, i, d, origin=doc.origin) for i, d in enumerate(doc.docs)]
    return out


def _layout(uses: list[Any]) -> str:
    return json.dumps([(d.origin, d.docs) for u in uses for d in u.documents], sort_keys=True, default=str)


def build(runbooks: list[Runbook]) -> Rendered:
    """Everything `render` writes, in memory."""
    from migrator.steps.kube import render_variables

    if not runbooks:
        raise InputError("render: give at least one --runbook")
    envs: list[Environment] = []
    layout: str | None = None
    first: list[Any] = []
    for rb in runbooks:
        if any(e.name == rb.name for e in envs):
            raise InputError(f"{rb.path}: runbook name {rb.name!r} given twice (values-{rb.name}.yaml is per name)")
        uses = _uses(rb)
        if layout is None:
            layout, first = _layout(uses), uses
        elif _layout(uses) != layout:
            raise InputError(f"{rb.path}: its steps apply other manifests than {runbooks[0].path}'s: the charts "
                             "are shared, render such runbooks into different directories")
        env = Environment(rb.name, rb, render_variables(rb))
        env.expected = [o for u in uses for o in u.objects]
        envs.append(env)
    srcs = sources(first)
    if not srcs:
        raise InputError(f"{runbooks[0].path}: no step applies manifests: nothing to render")
    files = {f"charts/{k}": v for k, v in charts.build(srcs, manifests.variables(), {e.name: e.vars for e in envs}).items()}
    present = sorted({p.split("/")[1] for p in files})
    result = Rendered(Path(), present, [e.name for e in envs], files, variables={e.name: e.vars for e in envs})
    for env in envs:
        result.expected[env.name] = env.expected
        cfg = env.runbook.file.gitops
        if cfg is None:
            continue
        apps = argocd.applications(present, env.name, env.vars, cfg)
        result.applications[env.name] = apps
        for app in apps:
            files[f"argocd/{env.name}/{app['metadata']['name']}.yaml"] = charts.dump_yaml(app)
    return result


def _replace_dir(new: Path, target: Path) -> None:
    """Put `new` where `target` is; refuse to replace a directory `render` did not write."""
    if target.exists():
        if not (target / charts.MARKER).is_file():
            raise InputError(f"{target}: exists and was not written by `migrate render` (no {charts.MARKER}); "
                             "refusing to replace it: give another --out or remove it")
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old)
    else:
        os.replace(new, target)


def write(result: Rendered, out: Path, verify: Callable[[Rendered], None] | None = None) -> None:
    """Write the tree into `out`: staged beside it, checked there by `verify` (nothing is replaced when
    it fails), then each top directory (charts/, argocd/) renamed into place."""
    out.mkdir(parents=True, exist_ok=True)
    tops = sorted({p.split("/")[0] for p in result.files})
    for top in tops:  # check every target first: nothing is replaced when one would be refused
        target = out / top
        if target.exists() and not (target / charts.MARKER).is_file():
            raise InputError(f"{target}: exists and was not written by `migrate render` (no {charts.MARKER}); "
                             "refusing to replace it: give another --out or remove it")
    staging = Path(tempfile.mkdtemp(prefix=".render-", dir=out))
    try:
        for path, text in result.files.items():
            dst = staging / path
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text, encoding="utf-8")
        if verify is not None:
            result.out = staging
            verify(result)
        for top in tops:
            (staging / top / charts.MARKER).write_text("written by `migrate render`; replaced whole on the next render\n")
            _replace_dir(staging / top, out / top)
        result.out = out
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run(runbooks: list[Runbook], out: Path, say: Say) -> Rendered:
    """The verb: build, write (staged), lint and compare with the real Helm engine, put in place."""
    result = build(runbooks)
    write(result, out, lambda r: check(r, say=say))
    say(f"wrote {len(result.files)} files into {out}: charts/ ({', '.join(result.charts)})"
        + (f", argocd/ ({', '.join(sorted(result.applications))})" if result.applications else ""))
    missing = [e for e in result.environments if e not in result.applications]
    if missing:
        say(f"no ArgoCD Applications for {', '.join(missing)}: its runbook has no gitops: section "
            "(repo_url, revision)")
    return result


def first_difference(want: Any, got: Any, path: str = "") -> str | None:
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(want) | set(got), key=str):
            if key not in got:
                return f"{path}.{key}: missing from Helm's"
            if key not in want:
                return f"{path}.{key}: only in Helm's"
            found = first_difference(want[key], got[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return f"{path}: {len(want)} items vs {len(got)}"
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            found = first_difference(w, g, f"{path}[{i}]")
            if found:
                return found
        return None
    if want != got or type(want) is not type(got):
        return f"{path}: {want!r} vs Helm's {got!r}"
    return None


def ident(obj: dict[str, Any]) -> str:
    return manifests.describe(obj)


def compare(expected: list[dict[str, Any]], rendered: list[dict[str, Any]], where: str,
            charted: dict[str, str] | None = None, complete: bool = True) -> list[str]:
    """Object by object: the same set of objects, each exactly equal (`charted`: key -> its chart;
    not `complete`: a chart could not be rendered, so missing objects are not news)."""
    want = {ident(o): o for o in expected}
    got = {ident(o): o for o in rendered}
    problems = []
    if complete:
        problems += [f"{where}: {k}: applied by the migration, not rendered by Helm" for k in sorted(set(want) - set(got))]
    problems += [f"{where}: {k}: rendered by Helm, not applied by the migration" for k in sorted(set(got) - set(want))]
    for k in sorted(set(want) & set(got)):
        diff = first_difference(want[k], got[k])
        if diff:
            chart = (charted or {}).get(k)
            problems.append(f"{chart + ' for ' if chart else ''}{where}: {k}: {diff}")
    return problems


def check(result: Rendered, *, lint: bool = True, say: Say = lambda _line: None) -> None:
    """Lint every chart and render it for every environment with the real Helm engine; fail on any
    lint warning or any object Helm renders otherwise than the migration applies."""
    from migrator.adapters import helm

    result.helm = helm.version()
    problems: list[str] = []
    if lint:
        for chart in result.charts:
            problems += helm.lint(result.out / "charts" / chart)
        if velero_chart.CHART in result.charts:  # its Velero objects render only with an environment's values
            chart_dir = result.out / "charts" / velero_chart.CHART
            for env in result.environments:
                problems += [f"{env}: {p}" for p in helm.lint(chart_dir, values_file=chart_dir / f"values-{env}.yaml")]
    for env in result.environments:
        everything: list[dict[str, Any]] = []
        seen: dict[str, str] = {}
        complete = True
        for chart in result.charts:
            chart_dir = result.out / "charts" / chart
            try:
                objs = helm.render(chart_dir, [chart_dir / "values.yaml", chart_dir / f"values-{env}.yaml"],
                                   release=chart, namespace=argocd.destination_namespace(chart, result.variables[env]))
            except PermanentError as exc:
                problems.append(f"{env}: {exc}")
                complete = False
                continue
            for obj in objs:
                if chart == velero_chart.CHART and velero_chart.chart_only(obj):
                    result.chart_only.setdefault(env, []).append(obj)  # not applied by the migration
                    continue
                key = ident(obj)
                if key in seen:
                    problems.append(f"{chart} for {env}: {key} is rendered by {seen[key]} too")
                seen[key] = chart
                everything.append(obj)
        problems += compare(result.expected[env], everything, env, seen, complete)
        result.compared += len(everything)
    if problems:
        raise PermanentError(f"{len(problems)} problems in the rendered charts: " + " | ".join(problems[:5])
                             + (f" | and {len(problems) - 5} more" if len(problems) > 5 else ""))
    say(f"{result.helm}: {len(result.charts)} charts lint clean; for {', '.join(result.environments)} Helm renders "
        f"exactly the {result.compared} objects the migration applies")
    for env, objs in sorted(result.chart_only.items()):
        say(f"{env}: also {', '.join(sorted(ident(o) for o in objs))} (Velero's: only in the charts, for ArgoCD)")


def render(runbooks: list[Path], out: Path, say: Say = print) -> Rendered:
    """The verb, from runbook paths."""
    from migrator.steps.catalogue import load_runbook

    return run([load_runbook(p, check_secrets=False) for p in runbooks], out, say)
