"""`migrate init NAME`: write a runbook for a new environment.

From `--inventory FILE` (what `migrate inspect --json` printed for the new VPS): the environment's
source (SSH user, host and port, the Compose project), the builtin phases, a `${secrets.x}` reference
(an environment variable to set) for every secret those phases use, and, as comments, every service
of the inventory with the steps that move it, or UNMAPPED when no step does (its volumes and
databases named, so nothing is left behind unnoticed). The target, DNS, OpenBao and Keycloak
sections the builtin phases read are written with TODO values to fill in (the target's endpoints are
the builtin charts' own pods, so they are copied as they are), with a secret reference for each
credential they name. `--from RUNBOOK` copies an existing one (a builtin example)
under the new name instead, its phase files named by builtin: when they ship with migrate.
Never overwrites a file (exit 2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from migrator.errors import InputError
from migrator.runbook import builtin

PHASES = [f"builtin:phases/{n}" for n in ("1-cluster-setup.yaml", "2-infrastructure.yaml", "3-applications.yaml",
                                          "4-validation.yaml", "5-cutover.yaml")]
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def init(name: str, directory: Path, inventory: Path | None, from_runbook: str | None) -> Path:
    if not NAME.match(name):
        raise InputError(f"init: {name!r} is not a runbook name (lower-case letters, digits and '-')")
    if (inventory is None) == (from_runbook is None):
        raise InputError("init: give --inventory FILE (from `migrate inspect --json`) or --from RUNBOOK")
    out = directory / f"{name}.yaml"
    if out.exists():
        raise InputError(f"init: {out} exists; not overwritten")
    text = _copy(name, from_runbook) if from_runbook is not None else _from_inventory(name, _read(inventory))
    directory.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def _read(path: Path | None) -> dict[str, Any]:
    assert path is not None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"init: --inventory {path}: not readable as JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or "projects" not in data:
        raise InputError(f"init: --inventory {path}: not an inventory (expected the output of `migrate inspect --json`)")
    return data


def _copy(name: str, source: str) -> str:
    try:
        path = builtin.resolve(source, Path.cwd())
    except ValueError as exc:
        raise InputError(f"init: --from {exc}") from None
    if not path.is_file():
        raise InputError(f"init: --from {source}: {path} does not exist")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    phases = []
    for rel in doc.get("phases") or []:
        target = builtin.resolve(rel, path.parent)
        try:
            phases.append(builtin.PREFIX + str(target.relative_to(builtin.root())))
        except ValueError:
            phases.append(str(target))
    doc.update(name=name, phases=phases)
    head = f"# Runbook {name}, copied by `migrate init` from {source}.\n"
    return head + yaml.safe_dump(doc, sort_keys=False)


def _phase_steps() -> list[dict[str, Any]]:
    steps = []
    for ref in PHASES:
        doc = yaml.safe_load(builtin.resolve(ref, Path.cwd()).read_text(encoding="utf-8"))
        steps += [s for s in doc.get("steps") or [] if isinstance(s, dict)]
    return steps


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _strings(v)]
    if isinstance(value, list):
        return [x for v in value for x in _strings(v)]
    return [value] if isinstance(value, str) else []


def mapping(inv: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, list[str]]:
    """service -> the ids of the steps whose parameters name it (or its volumes or databases)."""
    words = {s["id"]: set(re.findall(r"[A-Za-z0-9_.-]+", " ".join(_strings(s.get("with") or {})))) for s in steps}
    dbs_of: dict[str, set[str]] = {}
    for entry in inv.get("databases") or []:
        dbs_of.setdefault(entry.get("service", ""), set()).update(d["name"] for d in entry.get("databases") or [])
    out: dict[str, list[str]] = {}
    for project, body in (inv.get("projects") or {}).items():
        for service, svc in (body.get("services") or {}).items():
            volumes = {m["name"] for c in svc.get("containers") or [] for m in c.get("mounts") or []
                       if m.get("type") == "volume" and m.get("name")}
            short = {v.removeprefix(f"{project}_") for v in volumes}
            names = {service} | volumes | short | (dbs_of.get(service, set()) - {"postgres"})
            out[service] = [sid for sid, w in words.items() if names & w]
    return out


def _vars(inv: dict[str, Any]) -> dict[str, Any]:
    """The builtin phases' variables, from the production runbook that ships with migrate, with the
    VPS's own services in source_services (what inspect-source expects to find running)."""
    template = yaml.safe_load(builtin.resolve("builtin:runbooks/sevensa.yaml", Path.cwd()).read_text(encoding="utf-8"))
    out = dict(template.get("vars") or {})
    out["domain"] = "TODO-example.org"
    # The pre-cutover backup to a directory under the state dir, until the operator names a bucket (an s3
    # destination names secrets this runbook would not have).
    out["backup_to"] = {"dir": "backups"}
    out["source_services"] = sorted({s for body in (inv.get("projects") or {}).values()
                                     for s in (body.get("services") or {})})
    return out


def _placeholders() -> dict[str, Any]:
    """environment.target, dns, openbao and keycloak as the builtin phases need them, every value the
    new environment must give a TODO; the secrets they name are runbook secret names."""
    template = yaml.safe_load(builtin.resolve("builtin:runbooks/sevensa.yaml", Path.cwd()).read_text(encoding="utf-8"))
    endpoints = ((template.get("environment") or {}).get("target") or {}).get("endpoints") or {}
    return {
        "target": {"kubeconfig": "TODO-kubeconfig", "context": "TODO-kube-context",
                   "ingress_address": "TODO-ingress-address", "storage_class": "TODO-storage-class",
                   "data_access": "port-forward", "endpoints": endpoints},
        "dns": {"zone": "TODO-example.org", "primary": {"host": "TODO-dns-primary-address", "port": 53},
                "tsig": {"name": "TODO-tsig-key-name", "secret": "tsig_secret"},
                "nameservers": {"TODO-ns1.example.org": {"host": "TODO-ns1-address", "port": 53}}},
        "openbao": {"source": {"address": "TODO-https://vault.example.org", "token": "bao_source_token"},
                    # the cluster's OpenBao through a port-forward next to the migration (README)
                    "target": {"address": "http://127.0.0.1:18200", "token": "bao_target_token"}},
        "keycloak": {"source": {"url": "TODO-https://auth.example.org", "admin_password": "keycloak_admin_password"},
                     "target": {"url": "http://127.0.0.1:18080", "host_header": "TODO-auth.example.org",
                                "admin_password": "keycloak_admin_password"}},
    }


def _from_inventory(name: str, inv: dict[str, Any]) -> str:
    from migrator.runbook.interpolate import references

    steps = _phase_steps()
    secrets = sorted(set().union(*(references(s, "secrets") for s in steps)))
    host = str(inv.get("host") or "")
    user, _, hostport = host.rpartition("@")
    hostname, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    projects = sorted(inv.get("projects") or {})
    doc: dict[str, Any] = {
        "name": name,
        "production": False,
        "phases": PHASES,
        "state_dir": "state",
        "vars": _vars(inv),
        "secrets": {s: {"env": f"{name.upper().replace('-', '_')}_{s.upper()}"} for s in secrets},
        "environment": {
            "source": {"ssh": {"host": hostname or "TODO-vps-host", **({"port": int(port)} if port else {}),
                               "user": user or "root", "known_hosts": "TODO-known_hosts-file"},
                       "address": "TODO-the-vps-public-address",
                       "compose_project": projects[0] if len(projects) == 1 else "TODO-one-of-" + "-".join(projects)},
            **_placeholders(),
        },
    }
    # Every image the manifests use whose key names a service on the VPS comes from it (images.resolve).
    from migrator.manifests import render as manifests

    services = set(_vars(inv)["source_services"])
    from_vps = {k: k for k in sorted(manifests.defaults().get("images") or {}) if k in services}
    if from_vps:
        doc["images"] = {"from_vps": from_vps}
    # The credentials the environment names: references too (set the variables before a run).
    env_secrets = {"tsig_secret", "bao_source_token", "bao_target_token", "keycloak_admin_password"}
    doc["secrets"] = {s: {"env": f"{name.upper().replace('-', '_')}_{s.upper()}"}
                      for s in sorted(env_secrets | set(doc["secrets"]))}
    lines = [f"# Runbook {name}, written by `migrate init` from the inventory of {host or 'the VPS'}.",
             "# Fill in every TODO before a run (README: Runbook format). environment.dns is an RFC 2136 primary with",
             "# a TSIG key here; a registrar's API (provider: transip or cloudflare) works too.",
             "#", "# Services on the VPS and the steps of the builtin phases that move them:"]
    for service, ids in sorted(mapping(inv, steps).items()):
        lines.append(f"#   {service}: " + (", ".join(ids) if ids else
                     "UNMAPPED: no step names it; add a step for it, or say here why it is left behind"))
    lines.append("")
    return "\n".join(lines) + yaml.safe_dump(doc, sort_keys=False)
