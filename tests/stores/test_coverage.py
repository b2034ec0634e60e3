"""The coverage gate over an inventory: mapped by the steps' own parameters, by coverage.map, excluded with
a reason, system databases excluded by the gate, and one-line errors naming the runbook line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from migrator.runbook.coverage import evaluate
from migrator.steps.catalogue import load_runbook
from tests.util import write_runbook


def _container(name: str, svc: str, kind: str | None, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": f"shop-{name}-1", "service": svc, "kind": kind, "mounts": mounts}


def inventory() -> dict[str, Any]:
    vol = lambda n, d: {"type": "volume", "name": f"shop_{n}", "destination": d, "rw": True}  # noqa: E731
    services = {
        "db": [_container("db", "db", "postgres", [vol("db-data", "/var/lib/postgresql/data")])],
        "mysql": [_container("mysql", "mysql", "mysql", [vol("mysql-data", "/var/lib/mysql")])],
        "cache": [_container("cache", "cache", "redis", [vol("cache-data", "/data")])],
        "web": [_container("web", "web", None, [vol("uploads", "/uploads"), vol("tmp", "/tmp/cache"),
                                                 {"type": "bind", "name": "/srv/acme", "destination": "/acme", "rw": True},
                                                 {"type": "bind", "name": "/etc/cfg", "destination": "/cfg", "rw": False}])],
    }
    return {
        "projects": {"shop": {"services": {s: {"containers": c} for s, c in services.items()}}},
        "volumes": {f"shop_{n}": {"project": "shop"} for n in ("db-data", "mysql-data", "cache-data", "uploads", "tmp")},
        "databases": [
            {"service": "db", "container": "shop-db-1", "kind": "postgres",
             "databases": [{"name": "postgres", "size": 1}, {"name": "app", "size": 9}]},
            {"service": "mysql", "container": "shop-mysql-1", "kind": "mysql",
             "databases": [{"name": n, "size": 1} for n in ("information_schema", "mysql", "performance_schema",
                                                             "sys", "wordpress", "legacy")]},
            {"service": "cache", "container": "shop-cache-1", "kind": "redis",
             "databases": [{"name": "db0", "keys": 5}, {"name": "db3", "keys": 1}]},
        ],
    }


def _runbook(tmp: Path, coverage: dict[str, Any]) -> Path:
    ep = {"host": "127.0.0.1", "port": 1}
    rb = write_runbook(tmp, {1: [
        {"id": "inspect", "uses": "compose.inspect"},
        {"id": "copy-app", "uses": "postgres.copy",
         "with": {"source": {"container": "db", "database": "app"}, "target": {"endpoint": "x", "database": "app"}}},
        {"id": "copy-wp", "uses": "mysql.copy",
         "with": {"source": {"container": "shop-mysql-1", "database": "wordpress"},
                  "target": {"endpoint": "y", "database": "wordpress"}}},
        {"id": "copy-cache", "uses": "redis.copy",
         "with": {"source": {"container": "cache"}, "target": {"endpoint": "z"}}},
        {"id": "copy-uploads", "uses": "volume.copy", "with": {"volume": "uploads", "target": "uploads"}},
        {"id": "copy-acme", "uses": "shell.run", "with": {"command": ["true"]}},
    ]}, environment={"target": {"ingress_address": "127.0.0.1", "endpoints": {"x": dict(ep), "y": dict(ep), "z": dict(ep)}}})
    doc = yaml.safe_load(rb.read_text())
    doc["coverage"] = coverage
    rb.write_text(yaml.safe_dump(doc, sort_keys=False))
    return rb


def test_everything_mapped_or_excluded_is_100_percent(tmp_path: Path) -> None:
    rb = load_runbook(_runbook(tmp_path, {
        "map": [{"bind": "web:/acme", "step": "copy-acme"}],
        "exclude": [{"volume": "tmp", "reason": "cache, rebuilt on start"},
                    {"database": "mysql/legacy", "reason": "an old site, archived on 2024-01-01"}]}))
    cov = evaluate(rb, inventory())
    assert cov.errors() == []
    assert cov.percent == 100.0
    moved = {str(t): s for t, s in cov.mapped.items()}
    assert moved["database db/app"] == "copy-app" and moved["database mysql/wordpress"] == "copy-wp"
    assert moved["database cache/db0"] == moved["database cache/db3"] == "copy-cache"
    assert moved["volume uploads"] == "copy-uploads" and moved["bind web:/acme"] == "copy-acme"
    # A server's own volume moves with its databases.
    assert moved["volume db-data"] == "the copy of db's databases"
    excluded = {str(t): r for t, r in cov.excluded.items()}
    assert excluded["volume tmp"] == "cache, rebuilt on start"
    assert "system database" in excluded["database db/postgres"] and "system database" in excluded["database mysql/sys"]
    assert "bind web:/cfg" not in {str(t) for t in cov.things}  # read-only: configuration, not data


def test_unmapped_and_stale_entries_are_listed_with_their_runbook_line(tmp_path: Path) -> None:
    path = _runbook(tmp_path, {"exclude": [{"volume": "tpm", "reason": "typo'd name"}]})
    cov = evaluate(load_runbook(path), inventory())
    errs = cov.errors()
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "tpm" in text)
    assert errs[0].startswith(f"{path}:{line}: coverage.exclude.0: the VPS has no volume tpm (its volumes: ")
    unmapped = sorted(e.split(": ", 1)[1].split(" (")[0] for e in errs[1:])
    assert unmapped == ["bind web:/acme", "database mysql/legacy", "volume mysql-data", "volume tmp"]
    assert cov.percent < 100


def test_plan_exits_2_listing_what_is_not_covered(tmp_path: Path) -> None:
    from migrator.commands.coverage import coverage_gate
    from migrator.errors import InputError

    rb = load_runbook(_runbook(tmp_path, {}))
    try:
        coverage_gate(rb, inventory(), say=lambda _t: None)
    except InputError as exc:
        assert exc.exit_code == 2 and any("volume tmp" in p for p in exc.problems)
    else:
        raise AssertionError("no InputError")


def test_tls_import_acme_moves_the_volume_that_holds_acme_json(tmp_path: Path) -> None:
    inv = inventory()
    vol = {"type": "volume", "name": "shop_letsencrypt", "destination": "/letsencrypt", "rw": True}
    inv["projects"]["shop"]["services"]["proxy"] = {"containers": [_container("proxy", "proxy", None, [vol])]}
    inv["volumes"]["shop_letsencrypt"] = {"project": "shop"}

    def moved(path: str) -> str | None:
        rb = _runbook(tmp_path / path.strip("/").replace("/", "-"), {})
        doc = yaml.safe_load((rb.parent / "phase1.yaml").read_text())
        doc["steps"].append({"id": "import-certs", "uses": "tls.import-acme",
                             "with": {"namespaces": ["web"], "container": "proxy", "path": path}})
        (rb.parent / "phase1.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        return {str(t): s for t, s in evaluate(load_runbook(rb), inv).mapped.items()}.get("volume letsencrypt")

    assert moved("/letsencrypt/acme.json") == "import-certs"
    assert moved("/etc/traefik/acme.json") is None  # not on the volume: the step does not move it
