"""The coverage gate: every stateful thing on the VPS is moved by a step, or excluded on purpose.

The stateful things come from the inventory (adapters/inventory.py): named volumes, read-write bind
mounts, and each database inside each database server (Postgres, MySQL/MariaDB, Redis). A thing is
*mapped* when a step of the runbook moves it, found from the steps' own parameters:

- `postgres.copy`, `postgres.replicate`, `mysql.copy`: the database `<service>/<database>` of `source.container`;
- `redis.copy`: every database of `source.container` (or `databases`);
- `volume.copy`: the volume `volume`; `openbao.migrate`: the volumes of the OpenBao container;
- `tls.import-acme` reading inside `container`: the volume that holds its `path` (Traefik's ACME store);
- a volume mounted by a database server whose every database is mapped is moved by those copies;

or by an entry of the runbook's `coverage.map` (`{volume|bind|database: NAME, step: STEP-ID}`), for a
step that moves it without naming it. `coverage.exclude` (`{volume|bind|database: NAME, reason: ...}`)
leaves a thing behind on purpose. System databases (Postgres's `postgres`, MySQL's `mysql`, `sys`,
`information_schema`, `performance_schema`) are excluded by the gate itself, and say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from migrator.runbook.model import Runbook

SYSTEM_DATABASES = {"postgres": {"postgres"},
                    "mysql": {"mysql", "sys", "information_schema", "performance_schema"}}
DATABASE_MOVERS = ("postgres.copy", "postgres.replicate", "mysql.copy")


@dataclass(frozen=True, order=True)
class Thing:
    kind: str  # volume | bind | database
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass
class Coverage:
    things: list[Thing]
    mapped: dict[Thing, str] = field(default_factory=dict)  # -> what moves it (step id, or why)
    excluded: dict[Thing, str] = field(default_factory=dict)  # -> reason
    unmapped: list[Thing] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # runbook entries naming what the VPS does not have

    @property
    def percent(self) -> float:
        if not self.things:
            return 100.0
        return round(100.0 * (len(self.mapped) + len(self.excluded)) / len(self.things), 1)

    def errors(self) -> list[str]:
        return self.problems + [f"not moved by any step nor excluded: {t} (map it to a step, or add it to "
                                "coverage.exclude with a reason)" for t in self.unmapped]

    def summary(self) -> dict[str, Any]:
        return {"total": len(self.things), "mapped": len(self.mapped), "percent": self.percent,
                "moved_by": {str(t): s for t, s in sorted(self.mapped.items())},
                "excluded": [{"kind": t.kind, "name": t.name, "reason": r} for t, r in sorted(self.excluded.items())],
                "unmapped": [str(t) for t in self.unmapped]}


def stateful_things(inv: dict[str, Any]) -> tuple[list[Thing], dict[str, str], dict[Thing, str]]:
    """(things, container/service name -> service, volume -> the server service that mounts it)."""
    things: set[Thing] = set()
    names: dict[str, str] = {}
    volume_server: dict[Thing, str] = {}
    for proj, p in inv.get("projects", {}).items():
        for svc, body in p.get("services", {}).items():
            for c in body.get("containers", []):
                names[c["name"]] = svc
                names[svc] = svc
                for m in c.get("mounts", []):
                    if m.get("type") == "volume" and m.get("name"):
                        t = Thing("volume", _short(m["name"], proj))
                        if c.get("kind"):
                            volume_server[t] = svc
                    elif m.get("type") == "bind" and m.get("rw"):
                        things.add(Thing("bind", f"{svc}:{m.get('destination')}"))
    for vname, v in inv.get("volumes", {}).items():
        things.add(Thing("volume", _short(vname, v.get("project") or "")))
    for db in inv.get("databases", []):
        svc = db.get("service") or db.get("container", "")
        if "error" in db and not db.get("databases"):
            things.add(Thing("database", f"{svc}/?"))  # the server did not answer: it cannot be proven empty
        for d in db.get("databases", []):
            things.add(Thing("database", f"{svc}/{d['name']}"))
    return sorted(things), names, volume_server


def _short(volume: str, project: str) -> str:
    return volume[len(project) + 1:] if project and volume.startswith(f"{project}_") else volume


def _kinds(inv: dict[str, Any]) -> dict[str, str]:
    """service -> server kind (postgres, mysql, redis, openbao...)."""
    out = {}
    for p in inv.get("projects", {}).values():
        for svc, body in p.get("services", {}).items():
            for c in body.get("containers", []):
                if c.get("kind"):
                    out[svc] = c["kind"]
    return out


def _volume_mounts(inv: dict[str, Any]) -> dict[str, list[tuple[Thing, str]]]:
    """service -> the named volumes its containers mount, with where."""
    out: dict[str, list[tuple[Thing, str]]] = {}
    for proj, p in inv.get("projects", {}).items():
        for svc, body in p.get("services", {}).items():
            for c in body.get("containers", []):
                for m in c.get("mounts", []):
                    if m.get("type") == "volume" and m.get("name"):
                        out.setdefault(svc, []).append((Thing("volume", _short(m["name"], proj)),
                                                        str(m.get("destination") or "")))
    return out


def _holding(mounts: list[tuple[Thing, str]], path: str) -> Thing | None:
    """The volume a file of the container lives on: the mount with the longest destination above it."""
    above = [(len(dest), t) for t, dest in mounts if dest and path.startswith(dest.rstrip("/") + "/")]
    return max(above)[1] if above else None


def evaluate(runbook: Runbook, inv: dict[str, Any]) -> Coverage:
    things, names, volume_server = stateful_things(inv)
    cov = Coverage(things)
    present = set(things)
    kinds = _kinds(inv)
    by_kind = {t: t.kind for t in things}
    del by_kind
    # What the steps move, from their own parameters.
    for step in runbook.steps:
        w, uses = step.spec.with_, step.spec.uses
        src: dict[str, Any] = w["source"] if isinstance(w.get("source"), dict) else {}
        container = names.get(str(src.get("container") or ""), str(src.get("container") or ""))
        if uses in DATABASE_MOVERS and container and src.get("database"):
            _take(cov, present, Thing("database", f"{container}/{src['database']}"), step.id)
        elif uses == "redis.copy" and container:
            wanted = w.get("databases")
            for t in things:
                if t.kind == "database" and t.name.startswith(f"{container}/"):
                    if wanted is None or t.name.split("/", 1)[1] in {f"db{d}" for d in wanted}:
                        _take(cov, present, t, step.id)
        elif uses == "volume.copy" and w.get("volume"):
            _take(cov, present, Thing("volume", str(w["volume"])), step.id)
        elif uses == "tls.import-acme" and w.get("container"):
            # acme.json read inside Traefik's container: the volume it is on is what the step moves
            svc = names.get(str(w["container"]), str(w["container"]))
            held = _holding(_volume_mounts(inv).get(svc, []), str(w.get("path") or "/letsencrypt/acme.json"))
            if held is not None:
                _take(cov, present, held, step.id)
        elif uses == "openbao.migrate":
            for t, svc in volume_server.items():
                if kinds.get(svc) == "openbao":
                    _take(cov, present, t, step.id)
    # System databases, excluded by the gate itself.
    for t in things:
        if t.kind == "database" and t not in cov.mapped:
            svc, _, db = t.name.partition("/")
            if db in SYSTEM_DATABASES.get(kinds.get(svc, ""), set()):
                cov.excluded[t] = f"system database of the {kinds[svc]} server (recreated by the target server)"
    # The runbook's own entries.
    entries = runbook.file.coverage
    ids = set(runbook.step_ids())
    for section, items in (("map", entries.map), ("exclude", entries.exclude)):
        for i, e in enumerate(items):
            where = runbook.coverage_where.get(f"{section}.{i}", str(runbook.path))
            t = Thing(e.kind(), e.name())
            if t not in present:
                there = ", ".join(x.name for x in things if x.kind == t.kind) or "none"
                cov.problems.append(f"{where}: coverage.{section}.{i}: the VPS has no {t} (its {t.kind}s: {there})")
                continue
            if section == "map":
                if e.step not in ids:
                    cov.problems.append(f"{where}: coverage.map.{i}: no step {e.step!r} in the runbook")
                    continue
                cov.mapped[t] = str(e.step)
            else:
                cov.excluded[t] = str(e.reason)
    # A database server's own volume moves with its databases.
    for t, svc in volume_server.items():
        if t in cov.mapped or t in cov.excluded or kinds.get(svc) == "openbao":
            continue
        dbs = [x for x in things if x.kind == "database" and x.name.startswith(f"{svc}/")]
        if dbs and all(x in cov.mapped or x in cov.excluded for x in dbs) and any(x in cov.mapped for x in dbs):
            cov.mapped[t] = f"the copy of {svc}'s databases"
    cov.unmapped = [t for t in things if t not in cov.mapped and t not in cov.excluded]
    return cov


def _take(cov: Coverage, present: set[Thing], t: Thing, step_id: str) -> None:
    if t in present:
        cov.mapped.setdefault(t, step_id)
