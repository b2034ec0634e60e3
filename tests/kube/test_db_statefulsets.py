"""The target PostgreSQL StatefulSets: `postgres` is their superuser (what postgres.copy, .verify, .replicate and
.catchup log in as, with target_pg_password), the application's role comes from an init script.

With the official image, POSTGRES_USER is the only superuser it creates; these tests keep the manifests and the
phases agreeing on who that is, and keep the application's password off command lines and out of ConfigMaps.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from migrator.manifests import render
from migrator.runbook.model import Runbook
from migrator.steps.catalogue import load_runbook
from migrator.steps.validate_security import Cluster, check_config_maps, check_env
from tests.util import REPO

# (manifest set, StatefulSet, database)
DATABASES = [("infra", "keycloak-db", "keycloak"), ("rentguy", "rentguy-db", "rentguy"),
             ("psra", "psra-db", "psra"), ("wpcs", "wpcs-db", "wpcs")]
INITDB = "/docker-entrypoint-initdb.d"
SUPERUSER_SECRET = "${secrets.target_pg_password}"


@pytest.fixture(scope="module")
def production() -> Runbook:
    return load_runbook(REPO / "runbooks" / "sevensa.yaml", check_secrets=False)


@pytest.fixture(scope="module")
def objects(production: Runbook) -> dict[str, list[dict[str, Any]]]:
    """Each set rendered as kube.apply renders it for production."""
    target = production.environment.target
    vars_ = render.variables(production.file.vars, target.storage_class if target else None)
    return {name: render.render_set(name, vars_) for name, _, _ in DATABASES}


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env") or []}


def secret_ref(env: dict[str, Any]) -> tuple[str, str]:
    ref = env["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def init_script(objs: list[dict[str, Any]], sts: dict[str, Any]) -> tuple[dict[str, Any], str]:
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == INITDB]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    cm = find(objs, "ConfigMap", volume["configMap"]["name"])
    (script,) = cm["data"].values()
    return cm, script


@pytest.mark.parametrize(("set_name", "name", "db"), DATABASES)
def test_postgres_is_the_superuser_with_its_own_secret(objects: dict[str, list[dict[str, Any]]], set_name: str,
                                                       name: str, db: str) -> None:
    sts = find(objects[set_name], "StatefulSet", name)
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["POSTGRES_USER"] == {"name": "POSTGRES_USER", "value": "postgres"}
    assert secret_ref(env["POSTGRES_PASSWORD"]) == (f"{name}-superuser", "password")
    assert env["POSTGRES_DB"]["value"] == db
    # the application's role: its name and password from the Secret its workloads read too
    assert secret_ref(env["APP_DB_USER"]) == (f"{name}-credentials", "username")
    assert secret_ref(env["APP_DB_PASSWORD"]) == (f"{name}-credentials", "password")
    for probe in ("livenessProbe", "readinessProbe"):
        # exec probes get no $(VAR) expansion: the user is written out
        assert container[probe]["exec"]["command"] == ["pg_isready", "-U", "postgres", "-d", db]
    # only the database's own pod reads the superuser's password
    for obj in objects[set_name]:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet") and obj is not sts:
            assert f"{name}-superuser" not in str(obj), obj["metadata"]["name"]


@pytest.mark.parametrize(("set_name", "name", "db"), DATABASES)
def test_the_init_script_creates_the_app_role_without_exposing_its_password(
        objects: dict[str, list[dict[str, Any]]], set_name: str, name: str, db: str) -> None:
    objs = objects[set_name]
    sts = find(objs, "StatefulSet", name)
    cm, script = init_script(objs, sts)
    assert cm["metadata"]["namespace"] == sts["metadata"]["namespace"]
    assert cm["metadata"]["labels"] == sts["metadata"]["labels"]
    assert all(key.endswith((".sh", ".sql")) for key in cm["data"])  # what the entrypoint runs
    # psql reads the values from the environment (\getenv) and quotes them (%I, %L)
    assert "\\getenv app_user APP_DB_USER" in script and "\\getenv app_password APP_DB_PASSWORD" in script
    assert "\\getenv app_db POSTGRES_DB" in script
    assert re.search(r"CREATE ROLE %I LOGIN PASSWORD %L', :'app_user', :'app_password'", script)
    assert "ALTER DATABASE %I OWNER TO %I', :'app_db', :'app_user'" in script
    # the shell part is one psql with a quoted here-document: the shell expands nothing inside it, and the
    # password is never an argument (no $APP_DB_PASSWORD, PGPASSWORD=, --password, -c or -v with it)
    shell, _, rest = script.partition("<<'EOSQL'\n")
    assert rest.rstrip().endswith("\nEOSQL"), "the SQL must be a quoted here-document"
    assert "ON_ERROR_STOP=1" in shell and '--username "$POSTGRES_USER"' in shell
    assert "password" not in shell.lower() and "APP_DB" not in shell
    assert not re.search(r"\$\{?APP_DB_PASSWORD", script)
    # no literal secret: validate.security's ConfigMap audit (values and key-looking text) finds nothing,
    # (stand-in values for the secrets)
    secrets = {"rentguy_db_password": "rentguy-pw-value", "target_pg_password": "superuser-pw-value"}
    cluster = Cluster(namespaces=[cm["metadata"]["namespace"]], config_maps=[cm], workloads=[sts])
    assert check_config_maps(cluster, secrets) == []
    assert check_env(cluster, secrets) == []


@pytest.mark.parametrize(("set_name", "name", "db"), DATABASES)
def test_the_phases_create_the_superuser_secret_before_the_statefulset(
        production: Runbook, objects: dict[str, list[dict[str, Any]]], set_name: str, name: str, db: str) -> None:
    sts = find(objects[set_name], "StatefulSet", name)
    ids = production.step_ids()
    (secret_step,) = [s for s in production.steps
                      if s.spec.uses == "kube.secret" and s.params_raw["name"] == f"{name}-superuser"]
    with_ = secret_step.params_raw
    assert with_["namespace"] == sts["metadata"]["namespace"]
    assert with_["data"] == {"password": {"secret": "target_pg_password"}}
    assert with_["labels"] == {"app": sts["metadata"]["labels"]["app"]}
    (apply_step,) = [s for s in production.steps
                     if s.spec.uses == "kube.apply" and set_name in (s.params_raw.get("sets") or [])]
    assert secret_step.id in apply_step.spec.needs
    assert ids.index(secret_step.id) < ids.index(apply_step.id)
    # every postgres step aimed at this database logs in as the superuser the Secret sets up
    targets = [s for s in production.steps if s.spec.uses.startswith("postgres.")
               and (s.spec.with_.get("target") or {}).get("endpoint") == name]
    assert targets, f"no postgres step targets {name}"
    for step in targets:
        target = step.spec.with_["target"]
        assert (target["user"], target["password"], target["database"]) == ("postgres", SUPERUSER_SECRET, db), step.id


def test_waiting_for_the_database_uses_the_database_image(objects: dict[str, list[dict[str, Any]]],
                                                          production: Runbook) -> None:
    """An init container that waits for its database runs the database's image and its pg_isready: the
    application's image need not have nc or any client (a python:slim image has neither)."""
    target = production.environment.target
    images = render.variables(production.file.vars, target.storage_class if target else None)["images"]
    waits = []
    for name, statefulset, _ in DATABASES:
        for obj in objects[name]:
            spec = obj.get("spec", {}).get("template", {}).get("spec", {})
            for init in spec.get("initContainers") or []:
                script = " ".join(init.get("command") or []) + " ".join(init.get("args") or [])
                if statefulset in script:
                    waits.append(obj["metadata"]["name"])
                    assert init["image"] == images[statefulset], (obj["metadata"]["name"], init["image"])
                    assert "pg_isready" in script and "nc " not in script
    assert waits == ["rentguy-api"]
