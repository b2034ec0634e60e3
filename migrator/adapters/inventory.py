"""The inventory of the VPS: compose projects, services, containers, volumes, databases, OpenBao, Keycloak.

Only NAMES of environment variables are collected, never their values. Databases are listed by running
psql inside each Postgres container as the postgres user over its unix socket (no password needed, none
passed). `migrator.commands.inspect.inspect()` stores the result in the state file's `extra["source_inventory"]`, under the run
lock; `diff()` compares two inventories.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migrator.adapters.docker import DockerRemote

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
STATE_KEY = "source_inventory"
# The superuser is POSTGRES_USER when the image sets it (as the official image does), else postgres; the
# name is read inside the container, so no value of the container's environment leaves it.
PSQL = ["sh", "-c", 'exec psql -X -A -t -q -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" -d postgres -c "$1"',
        "psql"]
DB_QUERY = ("select datname, pg_database_size(datname) from pg_database "
            "where not datistemplate order by datname")


# MySQL/MariaDB: the database names, read inside the container as root (its unix socket; else the root
# password from the container's own environment, which never leaves it).
MYSQL = ["sh", "-c", 'q="$1"; c=$(command -v mariadb || command -v mysql); '
         '"$c" -uroot -N -B -e "$q" 2>/dev/null && exit 0; '
         'MYSQL_PWD="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}" exec "$c" -uroot -N -B -e "$q"', "mysql"]
# The first row is the server's version; then one row per schema.
MYSQL_QUERY = ("SELECT VERSION(), -1; SELECT s.SCHEMA_NAME, COALESCE(SUM(t.DATA_LENGTH + t.INDEX_LENGTH), 0) FROM information_schema.SCHEMATA s "
               "LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME GROUP BY s.SCHEMA_NAME ORDER BY 1")
# Redis: INFO (server version and keyspace; one section each is Redis 7 only) with the password from the
# container's environment (REDISCLI_AUTH, not argv).
REDIS = ["sh", "-c", 'REDISCLI_AUTH="${REDIS_PASSWORD:-}" exec redis-cli --no-auth-warning INFO']


def _kind(image: str, service: str, command: str = "") -> str | None:
    """The kind of server in a container, from its image, service name and command line."""
    text = f"{image} {service} {command}".lower()
    for kind, words in (("postgres", ("postgres", "postgis", "timescale")), ("mysql", ("mariadb", "mysql", "percona")),
                        ("redis", ("redis", "valkey", "keydb")), ("openbao", ("openbao", "vault")),
                        ("keycloak", ("keycloak",))):
        if any(w in text for w in words):
            return kind
    return None


def _container(c: Any, digests: dict[str, list[str]] | None = None) -> dict[str, Any]:
    a = c.attrs
    state = a.get("State", {})
    host = a.get("HostConfig", {})
    cfg = a.get("Config", {})
    ports = []
    for port, binds in sorted((a.get("NetworkSettings", {}).get("Ports") or {}).items()):
        for b in binds or [{}]:
            ports.append(f"{b.get('HostIp', '')}:{b.get('HostPort')}->{port}" if b.get("HostPort") else port)
    image = cfg.get("Image", "")
    return {
        "name": c.name,
        "id": c.id[:12],
        "state": state.get("Status", "unknown"),
        "health": (state.get("Health") or {}).get("Status"),
        "image": image,
        "image_id": a.get("Image", ""),
        # The registry digests of that image (repo@sha256:...), empty when it was built or loaded locally.
        "repo_digests": sorted((digests or {}).get(a.get("Image", ""), [])),
        "restart_policy": (host.get("RestartPolicy") or {}).get("Name") or "no",
        "ports": ports,
        "networks": sorted((a.get("NetworkSettings", {}).get("Networks") or {}).keys()),
        "mounts": [{"type": m.get("Type"), "name": m.get("Name") or m.get("Source"), "destination": m.get("Destination"),
                    "rw": m.get("RW")} for m in a.get("Mounts", [])],
        "env_names": sorted({e.split("=", 1)[0] for e in cfg.get("Env") or []}),
        "kind": _kind(image, c.labels.get(SERVICE_LABEL, ""),
                      " ".join([*(cfg.get("Entrypoint") or []), *(cfg.get("Cmd") or [])])),
    }


def _databases(dr: DockerRemote, container: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"container": container["name"], "service": container["service"],
                             "project": container["project"], "image": container["image"],
                             "kind": container["kind"]}
    if container["state"] != "running":
        entry["error"] = f"container is {container['state']}"
        return entry
    if container["kind"] == "mysql":
        return _mysql_databases(dr, container, entry)
    if container["kind"] == "redis":
        return _redis_databases(dr, container, entry)
    rc, out, err = dr.exec_run(container["name"], [*PSQL, "show server_version"], user="postgres")
    if rc != 0:
        entry["error"] = (err or out).decode(errors="replace").strip().splitlines()[-1:] or [f"psql exited {rc}"]
        entry["error"] = entry["error"][0]
        return entry
    entry["version"] = out.decode().strip()
    rc, out, err = dr.exec_run(container["name"], [*PSQL, DB_QUERY], user="postgres")
    if rc != 0:
        entry["error"] = (err or out).decode(errors="replace").strip()[-200:]
        return entry
    dbs = []
    for line in out.decode().splitlines():
        if "|" in line:
            name, size = line.rsplit("|", 1)
            dbs.append({"name": name, "size": int(size)})
    entry["databases"] = dbs
    return entry


def _mysql_databases(dr: DockerRemote, container: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    rc, out, err = dr.exec_run(container["name"], [*MYSQL, MYSQL_QUERY])
    if rc != 0:
        entry["error"] = ((err or out).decode(errors="replace").strip().splitlines() or [f"mysql exited {rc}"])[-1]
        return entry
    rows = [line.split("\t", 1) for line in out.decode().splitlines() if "\t" in line]
    if rows and rows[0][1] == "-1":
        entry["version"] = rows.pop(0)[0]
    entry["databases"] = [{"name": n, "size": int(sz)} for n, sz in rows]
    return entry


def _redis_databases(dr: DockerRemote, container: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    rc, out, err = dr.exec_run(container["name"], REDIS)
    text = out.decode(errors="replace")
    # An error is a reply of its own; INFO's errorstats section names ERR too, so look at the start only.
    if rc != 0 or text.lstrip().startswith(("NOAUTH", "ERR", "WRONGPASS")) or "redis_version:" not in text:
        entry["error"] = ((err or out).decode(errors="replace").strip().splitlines() or [f"redis-cli exited {rc}"])[-1]
        return entry
    dbs = []
    for line in text.splitlines():  # db0:keys=602,expires=100,avg_ttl=...
        name, _, rest = line.strip().partition(":")
        if name == "redis_version":
            entry["version"] = rest
        elif name.startswith("db") and "keys=" in rest:
            dbs.append({"name": name, "keys": int(rest.split("keys=", 1)[1].split(",", 1)[0])})
    entry["databases"] = dbs
    return entry


def repo_digests(dr: DockerRemote) -> dict[str, list[str]]:
    """image id -> its registry digests, for every image on the VPS (one API call)."""
    return {img.id: list(img.attrs.get("RepoDigests") or []) for img in dr.client.images.list()}


def images(dr: DockerRemote, project: str) -> dict[str, Any]:
    """The part of the inventory that says which image each service runs: no database is asked, so
    `migrate plan` can read it cheaply (same shape as collect()'s projects)."""
    digests = repo_digests(dr)
    services: dict[str, Any] = {}
    for c in sorted(dr.require_project(project), key=lambda c: c.name):
        a = c.attrs
        image_id = a.get("Image", "")
        services.setdefault(c.labels.get(SERVICE_LABEL, ""), {"containers": []})["containers"].append(
            {"name": c.name, "image": (a.get("Config") or {}).get("Image", ""), "image_id": image_id,
             "repo_digests": sorted(digests.get(image_id, []))})
    return {"projects": {project: {"services": services}}}


def collect(dr: DockerRemote, project: str | None = None) -> dict[str, Any]:
    """Everything the migration needs to know about the VPS (one project, or every compose project)."""
    client = dr.client
    filters = {"label": f"{PROJECT_LABEL}={project}" if project else PROJECT_LABEL}
    containers = client.containers.list(all=True, filters=filters)
    if project and not containers:
        dr.require_project(project)  # raises the one-line error naming the projects found
    digests = repo_digests(dr)
    projects: dict[str, Any] = {}
    flat: list[dict[str, Any]] = []
    for c in sorted(containers, key=lambda c: c.name):
        proj, svc = c.labels.get(PROJECT_LABEL, ""), c.labels.get(SERVICE_LABEL, "")
        info = {**_container(c, digests), "project": proj, "service": svc}
        flat.append(info)
        service = projects.setdefault(proj, {"services": {}})["services"].setdefault(svc, {"containers": []})
        service["containers"].append(info)
    volumes: dict[str, Any] = {}
    for v in (client.df().get("Volumes") or []):
        labels = v.get("Labels") or {}
        if project and labels.get(PROJECT_LABEL) != project:
            continue
        volumes[v["Name"]] = {"driver": v.get("Driver"), "project": labels.get(PROJECT_LABEL),
                              "size": (v.get("UsageData") or {}).get("Size"),
                              "ref_count": (v.get("UsageData") or {}).get("RefCount")}
    databases = [_databases(dr, c) for c in flat if c["kind"] in ("postgres", "mysql", "redis")]
    return {
        "host": dr.host,
        "collected_at": time.time(),
        "server_version": client.api._version,
        "projects": projects,
        "volumes": volumes,
        "databases": databases,
        "openbao": [{"container": c["name"], "service": c["service"], "image": c["image"], "state": c["state"]}
                    for c in flat if c["kind"] == "openbao"],
        "keycloak": [{"container": c["name"], "service": c["service"], "image": c["image"], "state": c["state"]}
                     for c in flat if c["kind"] == "keycloak"],
    }


def services(inv: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """service name ("project/service" when several projects) -> its containers."""
    many = len(inv["projects"]) > 1
    return {(f"{p}/{s}" if many else s): body["containers"]
            for p, proj in inv["projects"].items() for s, body in proj["services"].items()}


# -- diff -------------------------------------------------------------------------------------------

def _flat(inv: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for proj in inv.get("projects", {}).values():
        for svc, body in proj["services"].items():
            out[f"service {svc}"] = len(body["containers"])
            for c in body["containers"]:
                for key in ("state", "health", "image", "image_id", "restart_policy", "ports", "networks", "env_names"):
                    out[f"container {c['name']} {key}"] = c.get(key)
    for name, v in inv.get("volumes", {}).items():
        out[f"volume {name} driver"] = v.get("driver")
    for db in inv.get("databases", []):
        out[f"postgres {db['container']} version"] = db.get("version")
        for d in db.get("databases", []):
            out[f"postgres {db['container']} database {d['name']}"] = "present"
    return out


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human lines: '+ added', '- removed', '~ key: old -> new'. Sizes are left out (they always move)."""
    a, b = _flat(old), _flat(new)
    lines = []
    for key in sorted(a.keys() | b.keys()):
        if key not in b:
            lines.append(f"- {key}: {a[key]}")
        elif key not in a:
            lines.append(f"+ {key}: {b[key]}")
        elif a[key] != b[key]:
            lines.append(f"~ {key}: {a[key]} -> {b[key]}")
    return lines


# -- rendering --------------------------------------------------------------------------------------

def _size(n: int | None) -> str:
    if n is None or n < 0:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def render(inv: dict[str, Any]) -> str:
    lines = [f"VPS {inv['host']} (Docker API {inv['server_version']})"]
    for pname, proj in sorted(inv["projects"].items()):
        lines.append(f"\ncompose project {pname}: {len(proj['services'])} services")
        rows = [("SERVICE", "CONTAINER", "STATE", "HEALTH", "IMAGE", "RESTART", "PORTS", "ENV (names)")]
        for svc, body in sorted(proj["services"].items()):
            for c in body["containers"]:
                rows.append((svc, c["name"], c["state"], c["health"] or "-", c["image"], c["restart_policy"],
                             ",".join(c["ports"]) or "-", ",".join(c["env_names"]) or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(7)]
        for r in rows:
            lines.append("  " + "  ".join(r[i].ljust(widths[i]) for i in range(7)) + "  " + r[7])
    if inv["volumes"]:
        lines.append("\nvolumes")
        for name, v in sorted(inv["volumes"].items()):
            lines.append(f"  {name:<40} {v['driver'] or '?':<8} {_size(v['size']):>10}")
    if inv["databases"]:
        lines.append("\ndatabase servers")
        for db in inv["databases"]:
            if "error" in db:
                lines.append(f"  {db['container']}: {db['error']}")
                continue
            names = ", ".join(f"{d['name']} ({_size(d['size'])})" if "size" in d else f"{d['name']} ({d.get('keys')} keys)"
                              for d in db.get("databases", []))
            kind = db.get("kind", "postgres")
            label = {"postgres": "PostgreSQL", "mysql": "MySQL/MariaDB", "redis": "Redis"}[kind]
            label += f" {db['version']}" if db.get("version") else ""
            lines.append(f"  {db['container']}: {label}: {names}")
    for kind in ("openbao", "keycloak"):
        for x in inv[kind]:
            lines.append(f"{kind}: {x['container']} ({x['image']}, {x['state']})")
    return "\n".join(lines)
