"""The five Helm charts of the architecture document, generated from the manifests the migration applies.

One source: every chart template is a manifest document of `migrator/manifests/*.yaml` with its
`${vars.x}` references turned into Helm expressions over `.Values.global` (the whole-value ones keep
their type through `toJson`, the embedded ones go through `printf "%v"`), and the values are the
runbook's variables. So what Helm renders for an environment is, object by object, what the migration
applied there (tests/gitops prove it with the real Helm engine), and editing a manifest changes both.

Charts by namespace: rentguy, psra, wpcs, ai-orchestration (ai) and sevensa-infra (infra, ingress,
monitoring, logging, and the cluster-scoped RBAC). The objects labelled `component: db` (each
PostgreSQL StatefulSet with its Service and init ConfigMap) form the `charts/postgresql` subchart of
their chart, and those labelled `component: redis` (rentguy-redis: StatefulSet and Service) its
`charts/redis` subchart, as the document lays the charts out. Every variable lives under `global` so that
parent and subcharts read the same value.
Secrets are not in any chart: the migration creates them from the runbook's secret references
(kube.secret); the charts name them, as the document's `existingSecret` values do.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from migrator.errors import PermanentError
from migrator.manifests import velero_chart
from migrator.runbook.interpolate import REF, WHOLE, Unresolved, lookup_path

CHART_VERSION = "0.1.0"
# the `component` label -> the subchart its objects form (in the chart of their namespace)
SUBCHARTS: dict[str, str] = {"db": "postgresql", "redis": "redis"}
SUBCHART_DESCRIPTIONS = {"postgresql": "PostgreSQL of {chart} (StatefulSet, Service, init)",
                         "redis": "Redis of {chart} (StatefulSet, Service)"}
# chart -> the keys of vars.namespaces whose objects it carries; its Application deploys to the first
CHARTS: dict[str, tuple[str, ...]] = {
    "rentguy": ("rentguy",),
    "psra": ("psra",),
    "wpcs": ("wpcs",),
    "ai-orchestration": ("ai",),
    "sevensa-infra": ("infra", "ingress", "monitoring", "logging"),
}
CLUSTER_SCOPED_CHART = "sevensa-infra"
DESCRIPTIONS = {
    "rentguy": "RentGuy: frontend, API and PostgreSQL",
    "psra": "PSRA-LTSD: frontend, API, Origin Calculation Engine and PostgreSQL",
    "wpcs": "WPCS: API, WordPress and PostgreSQL",
    "ai-orchestration": "AI orchestration: LangGraph, n8n, Claude Chat and the Trading Dashboard",
    "sevensa-infra": "Infrastructure: OpenBao, Keycloak, Traefik, monitoring, logging and cluster RBAC",
}
CLUSTER_KINDS = ("Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass")
MARKER = ".generated-by-migrate-render"


@dataclass
class Source:
    """One manifest document and where it came from."""

    set_name: str
    index: int
    doc: dict[str, Any]
    origin: str = ""  # the file, as the chart's comments name it

    @property
    def where(self) -> str:
        return f"manifest set {self.set_name} (document {self.index + 1})"

    @property
    def file(self) -> str:
        return self.origin or f"migrator/manifests/{self.set_name}.yaml"


@dataclass
class ChartPart:
    """The documents of one chart (or subchart), in apply order within each kind."""

    name: str
    docs: list[Source] = field(default_factory=list)

    def refs(self) -> set[str]:
        found: set[str] = set()
        for s in self.docs:
            found |= _refs(s.doc)
        return found


def _refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        out: set[str] = set()
        for v in value.values():
            out |= _refs(v)
        return out
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    if isinstance(value, str):
        return {m.group(2) for m in REF.finditer(value) if m.group(1) == "vars"}
    return set()


def _namespace_key(value: Any, where: str) -> str:
    m = WHOLE.match(str(value or ""))
    if not m or m.group(1) != "vars" or not m.group(2).startswith("namespaces."):
        raise PermanentError(f"{where}: the namespace must be ${{vars.namespaces.NAME}} to be placed in a chart, "
                             f"not {value!r}")
    return m.group(2).split(".", 1)[1]


def chart_of(src: Source) -> tuple[str, str | None]:
    """(chart, the subchart it belongs to or None) for one manifest document."""
    doc = src.doc
    meta = doc.get("metadata") or {}
    kind = str(doc.get("kind"))
    if kind == "Namespace":
        key = _namespace_key(meta.get("name"), src.where)
    elif kind in CLUSTER_KINDS:
        return CLUSTER_SCOPED_CHART, None
    else:
        key = _namespace_key(meta.get("namespace"), src.where)
    chart = next((c for c, keys in CHARTS.items() if key in keys), None)
    if chart is None:
        raise PermanentError(f"{src.where}: namespace key {key!r} belongs to no chart (known: "
                             f"{', '.join(k for keys in CHARTS.values() for k in keys)})")
    return chart, SUBCHARTS.get(str((meta.get("labels") or {}).get("component")))


def split(sources: Iterable[Source]) -> dict[str, tuple[ChartPart, dict[str, ChartPart]]]:
    """chart -> (its own documents, {subchart: its documents} for the subcharts that have any)."""
    out: dict[str, tuple[ChartPart, dict[str, ChartPart]]] = {name: (ChartPart(name), {}) for name in CHARTS}
    for src in sources:
        chart, sub = chart_of(src)
        own, subs = out[chart]
        (own if sub is None else subs.setdefault(sub, ChartPart(sub))).docs.append(src)
    return out


# -- templates ------------------------------------------------------------------------------------------
def _go_string(text: str) -> str:
    """A Go template string constant (JSON's escapes are Go's; non-ASCII stays UTF-8)."""
    return json.dumps(text, ensure_ascii=False)


def _values_path(dotted: str) -> str:
    return "index .Values.global " + " ".join(_go_string(p) for p in dotted.split("."))


def expression(value: str) -> str | None:
    """The Helm action that renders `value` as the migration's interpolation would, or None when the
    string is the same in both (no reference, no escape, nothing Go templates would read)."""
    whole = WHOLE.match(value)
    if whole and whole.group(1) == "vars":
        return "{{ " + _values_path(whole.group(2)) + " | toJson }}"
    parts: list[str] = []
    args: list[str] = []
    pos = 0
    for m in REF.finditer(value):
        if m.group(1) != "vars":
            continue
        parts.append(value[pos:m.start()].replace("$${", "${").replace("%", "%%"))
        parts.append("%v")
        args.append(f"({_values_path(m.group(2))})")
        pos = m.end()
    if not args:
        if "$${" not in value and "{{" not in value:
            return None
        return "{{ " + _go_string(value.replace("$${", "${")) + " | toJson }}"
    parts.append(value[pos:].replace("$${", "${").replace("%", "%%"))
    return "{{ printf " + _go_string("".join(parts)) + " " + " ".join(args) + " | toJson }}"


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # multi-line strings (config files in ConfigMaps) as literal blocks: readable, and no line of theirs
    # can be taken for a document separator
    if "\n" in data and not data.startswith(" ") and not any(line.rstrip() != line for line in data.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


def template(src: Source) -> str:
    """One manifest document as Helm template text."""
    salt = secrets.token_hex(4)
    actions: dict[str, str] = {}

    def swap(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            for key in value:
                if isinstance(key, str) and ("${" in key or "{{" in key):
                    raise PermanentError(f"{src.where}: {path}{key}: a reference in a key cannot go into a chart")
            return {k: swap(v, f"{path}{k}.") for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v, f"{path}[{i}].") for i, v in enumerate(value)]
        if isinstance(value, str):
            action = expression(value)
            if action is not None:
                token = f"HELMX{salt}N{len(actions)}X"
                actions[token] = action
                return token
        return value

    text = yaml.dump(swap(copy.deepcopy(src.doc), ""), Dumper=_Dumper, sort_keys=False, width=120,
                     allow_unicode=True, default_flow_style=False)
    for token, action in actions.items():
        n = text.count(token)  # tokens end in X: N1X is no part of N10X
        text = text.replace(token, action)
        if n != 1:
            raise PermanentError(f"{src.where}: could not place a Helm expression ({n} places)")
    return text


def templates(part: ChartPart) -> dict[str, str]:
    """templates/<kind>.yaml -> text: one file per kind, as the document's chart layout has it."""
    by_kind: dict[str, list[Source]] = {}
    for src in part.docs:
        by_kind.setdefault(str(src.doc["kind"]).lower(), []).append(src)
    out = {}
    for kind, docs in by_kind.items():
        body = "\n".join(f"---\n# from {s.file}\n{template(s)}" for s in docs)
        out[f"templates/{kind}.yaml"] = ("# Generated by `migrate render` from migrator/manifests: change the "
                                         "manifests and render again, not this file.\n" + body)
    return out


# -- values ---------------------------------------------------------------------------------------------
def _put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = copy.deepcopy(value)


def values_tree(refs: Iterable[str], vars_: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The variables the templates use, as a tree (a reference to a whole map takes the whole map)."""
    wanted = sorted(set(refs))
    tree: dict[str, Any] = {}
    for ref in wanted:
        if any(ref.startswith(other + ".") for other in wanted):
            continue
        try:
            _put(tree, ref, lookup_path(vars_, ref, "vars"))
        except Unresolved as exc:
            raise PermanentError(f"{where}: {exc.why}; set it in the runbook's vars:") from None
    return tree


def overrides(env: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """What an environment changes relative to the defaults (maps merged, anything else replaced)."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            sub = overrides(value, base[key])
            if sub:
                out[key] = sub
        elif key not in base or base[key] != value:
            out[key] = copy.deepcopy(value)
    return out


def schema_of(value: Any, strict: bool = False) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array"}
    if isinstance(value, dict):
        return {"type": "object", "properties": {k: schema_of(v) for k, v in value.items()},
                "required": sorted(value), "additionalProperties": not strict}
    return {}


def values_schema(global_defaults: dict[str, Any], subcharts: Iterable[str] = (), strict: bool = True) -> dict[str, Any]:
    """Every variable the templates use is required, with the type its default has. In a parent chart a
    key under `global` that no template uses is refused (a typo in a values file would otherwise be
    ignored); a subchart receives all of its parent's globals, so it cannot be that strict."""
    props: dict[str, Any] = {"global": schema_of(global_defaults, strict=strict)}
    required = ["global"]
    for sub in subcharts:
        props[sub] = {"type": "object", "properties": {"enabled": {"type": "boolean"}}, "required": ["enabled"]}
        required.append(sub)
    return {"$schema": "https://json-schema.org/draft-07/schema#", "title": "values", "type": "object",
            "properties": props, "required": required}


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def digest(files: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()


# -- the chart directories ------------------------------------------------------------------------------
def _chart_yaml(name: str, description: str, files_digest: str, subcharts: Iterable[str] = ()) -> str:
    meta: dict[str, Any] = {
        "apiVersion": "v2", "name": name, "description": description, "type": "application",
        "version": CHART_VERSION, "appVersion": CHART_VERSION,
        "annotations": {"sevensa.migrator/generated-by": "migrate render",
                        "sevensa.migrator/templates-sha256": files_digest},
    }
    deps = [{"name": sub, "version": CHART_VERSION, "condition": f"{sub}.enabled"} for sub in subcharts]
    if deps:
        meta["dependencies"] = deps
    return dump_yaml(meta)


def build(sources: Iterable[Source], defaults: Mapping[str, Any],
          environments: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Every file of the five charts, by path under charts/: Chart.yaml, values.yaml,
    values.schema.json, templates/<kind>.yaml, values-<environment>.yaml, charts/postgresql/..."""
    files: dict[str, str] = {}
    for chart, (own, subs) in split(sources).items():
        if not own.docs and not subs:
            continue
        where = f"chart {chart}"
        names = sorted(subs, key=list(SUBCHARTS.values()).index)  # postgresql, then redis
        refs = own.refs().union(*(subs[n].refs() for n in names))
        base = values_tree(refs, defaults, where)
        tpl = templates(own)
        velero = chart == velero_chart.CHART
        if velero:  # the one hand-written template: not in the migration's manifests (see velero_chart)
            tpl[velero_chart.TEMPLATE] = velero_chart.TEXT
        sub_files: dict[str, str] = {}
        for sub in names:
            sub_tpl = templates(subs[sub])
            sub_defaults = values_tree(subs[sub].refs(), defaults, f"{where}/{sub}")
            one = {**sub_tpl,
                   "values.yaml": "# The parent chart's `global` values apply here too.\n"
                                  + dump_yaml({"global": sub_defaults}),
                   "values.schema.json": json.dumps(values_schema(sub_defaults, strict=False), indent=2) + "\n"}
            one["Chart.yaml"] = _chart_yaml(sub, SUBCHART_DESCRIPTIONS[sub].format(chart=chart), digest(sub_tpl))
            sub_files.update({f"{sub}/{k}": v for k, v in one.items()})
        values: dict[str, Any] = {"global": base}
        for sub in names:
            values[sub] = {"enabled": True}
        schema = values_schema(base, names)
        if velero:
            values[velero_chart.KEY] = velero_chart.values(defaults, where)
            schema["properties"][velero_chart.KEY] = velero_chart.schema()
            schema["required"].append(velero_chart.KEY)
        own_files = {
            **tpl,
            "values.yaml": f"# Default values of {chart}: the production defaults of migrator/manifests/defaults.yaml.\n"
                           + dump_yaml(values),
            "values.schema.json": json.dumps(schema, indent=2) + "\n",
        }
        for env, env_vars in environments.items():
            changed = overrides(values_tree(refs, env_vars, f"{where} for {env}"), base)
            env_values = {"global": changed} if changed else {}
            if velero:
                v = overrides(velero_chart.values(env_vars, f"{where} for {env}"), values[velero_chart.KEY])
                if v:
                    env_values[velero_chart.KEY] = v
            own_files[f"values-{env}.yaml"] = (f"# {env}: what its runbook's vars change in {chart}'s defaults.\n"
                                              + (dump_yaml(env_values) if env_values else "{}\n"))
        own_files["Chart.yaml"] = _chart_yaml(chart, DESCRIPTIONS[chart], digest({**tpl, **{
            f"charts/{k}": v for k, v in sub_files.items()}}), names)
        for path, text in own_files.items():
            files[f"{chart}/{path}"] = text
        for path, text in sub_files.items():
            files[f"{chart}/charts/{path}"] = text
    return files
