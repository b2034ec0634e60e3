"""Watches: ADDED/MODIFIED/DELETED, resuming from a resourceVersion, selectors, 410 when too old."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from migrator.sandbox.kubeapi import ServerHandle, start_server

from .conftest import http


def _collect(core: client.CoreV1Api, ns: str, out: list[tuple[str, str]], **kw: Any) -> None:
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, ns, timeout_seconds=3, **kw):
        out.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()


def test_namespaced_watch_sees_added_modified_deleted(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespace({"metadata": {"name": ns + "-other"}})
    seen: list[tuple[str, str]] = []
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    t = threading.Thread(target=_collect, args=(core, ns, seen), kwargs={"resource_version": rv})
    t.start()
    core.create_namespaced_config_map(ns + "-other", {"metadata": {"name": "elsewhere"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "w"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("w", ns, {"data": {"a": "2"}})
    core.delete_namespaced_config_map("w", ns)
    t.join(timeout=5)
    assert not t.is_alive()
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_watch_resumes_from_resource_version(core: client.CoreV1Api, ns: str) -> None:
    first = core.create_namespaced_config_map(ns, {"metadata": {"name": "one"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "two"}})
    core.delete_namespaced_config_map("two", ns)
    seen: list[tuple[str, str]] = []
    _collect(core, ns, seen, resource_version=first.metadata.resource_version)
    assert seen == [("ADDED", "two"), ("DELETED", "two")]
    # without a resourceVersion the watch starts with the current state
    seen = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, ns, timeout_seconds=1):
        seen.append((ev["type"], ev["object"].metadata.name))
    assert seen == [("ADDED", "one")]


def test_label_selected_watch_and_cluster_wide_watch(kube: ServerHandle, core: client.CoreV1Api, ns: str) -> None:
    rv = kube.store.current_rv()
    core.create_namespaced_config_map(ns, {"metadata": {"name": "x", "labels": {"pick": "yes"}}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "y"}})
    core.patch_namespaced_config_map("x", ns, {"metadata": {"labels": {"pick": "no"}}})
    url = (f"{kube.url}/api/v1/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1"
           f"&labelSelector=pick%3Dyes")
    code, text = http("GET", url)
    events = [__import__("json").loads(line) for line in text.splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "x"), ("DELETED", "x")]


def test_send_initial_events_ends_with_a_bookmark(kube: ServerHandle, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "i"}})
    code, text = http("GET", f"{kube.url}/api/v1/namespaces/{ns}/configmaps?watch=1&sendInitialEvents=true"
                             "&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1")
    events = [__import__("json").loads(line) for line in text.splitlines()]
    assert events[0]["type"] == "ADDED" and events[-1]["type"] == "BOOKMARK"
    assert events[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_state_file_survives_restart_and_old_versions_expire(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = start_server(state_file=state, kubeconfig_file=tmp_path / "kc")
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(tmp_path / "kc")))
        core.create_namespace({"metadata": {"name": "persisted"}})
        cm = core.create_namespaced_config_map("persisted", {"metadata": {"name": "c"}, "data": {"k": "v"}})
    finally:
        first.stop()
    second = start_server(state_file=state, kubeconfig_file=tmp_path / "kc")
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(tmp_path / "kc")))
        again = core.read_namespaced_config_map("c", "persisted")
        assert again.data == {"k": "v"} and again.metadata.uid == cm.metadata.uid
        fresh = core.create_namespaced_config_map("persisted", {"metadata": {"name": "d"}})
        assert int(fresh.metadata.resource_version) > int(cm.metadata.resource_version)
        code, text = http("GET", f"{second.url}/api/v1/namespaces/persisted/configmaps?watch=1&resourceVersion=1")
        assert code == 410 and "too old resource version" in text["message"]
    finally:
        second.stop()
