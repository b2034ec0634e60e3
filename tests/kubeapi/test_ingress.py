"""The ingress stand-in routes by Host to the Service's workload and reports its readiness."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from kubernetes import client

from migrator.sandbox.kubeapi import FAIL_ANNOTATION, ServerHandle

from .conftest import deployment, wait_for


def _get(url: str, host: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _expose(api_client: client.ApiClient, ns: str, name: str, host: str) -> None:
    client.CoreV1Api(api_client).create_namespaced_service(ns, {"metadata": {"name": name}, "spec": {
        "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}})
    client.NetworkingV1Api(api_client).create_namespaced_ingress(ns, {"metadata": {"name": name}, "spec": {
        "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
            "service": {"name": name, "port": {"number": 80}}}}]}}]}})


def test_ingress_routes_to_ready_backend(kube: ServerHandle, api_client: client.ApiClient, apps: client.AppsV1Api,
                                         ns: str) -> None:
    assert kube.ingress_url
    host = f"app.{ns}.example.test"
    _expose(api_client, ns, "web", host)
    code, body = _get(kube.ingress_url + "/health", host)
    assert code == 503  # a service without a workload yet
    apps.create_namespaced_deployment(ns, deployment("web", ns))
    wait_for(lambda: _get(kube.ingress_url + "/health", host)[0] == 200, what="ingress 200")
    code, body = _get(kube.ingress_url + "/ready", host + ":443")
    assert code == 200
    assert body == {"host": host, "service": f"{ns}/web", "path": "/ready", "standin": "kube-ingress",
                    "workload": "deployment/web"}
    assert _get(kube.ingress_url + "/anything/else", host)[0] == 200
    assert _get(kube.ingress_url + "/health", "unknown.example.test")[0] == 404
    ing = client.NetworkingV1Api(api_client).read_namespaced_ingress("web", ns)
    assert ing.status.load_balancer.ingress[0].ip == "127.0.0.1"


def test_ingress_answers_503_when_backend_fails(kube: ServerHandle, api_client: client.ApiClient,
                                               apps: client.AppsV1Api, ns: str) -> None:
    assert kube.ingress_url
    host = f"bad.{ns}.example.test"
    _expose(api_client, ns, "bad", host)
    apps.create_namespaced_deployment(ns, deployment("bad", ns, annotations={FAIL_ANNOTATION: "CrashLoopBackOff: no"}))
    wait_for(lambda: apps.read_namespaced_deployment("bad", ns).status.observed_generation, what="observed")
    code, body = _get(kube.ingress_url + "/health", host)
    assert code == 503 and "CrashLoopBackOff: no" in body["error"] and body["service"] == f"{ns}/bad"
