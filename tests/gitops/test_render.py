"""`migrate render`: the five charts lint clean with the real Helm engine, and Helm renders, object by
object, what the migration applies; ArgoCD adopting them changes nothing on the cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.adapters import helm
from migrator.commands import render as rendering
from migrator.errors import InputError, PermanentError
from migrator.manifests import render
from migrator.steps.catalogue import load_runbook
from tests.kube.conftest import kube_runbook
from tests.util import REPO, engine, migrate

RUNBOOKS = ["runbooks/sandbox.yaml", "runbooks/sevensa.yaml", "runbooks/kind.yaml"]
CHARTS = ["ai-orchestration", "psra", "rentguy", "sevensa-infra", "wpcs"]


def rendered(out: Path, runbooks: list[str] = RUNBOOKS) -> rendering.Rendered:
    said: list[str] = []
    result = rendering.run([load_runbook(REPO / p, check_secrets=False) for p in runbooks], out, said.append)
    result.said = said  # type: ignore[attr-defined]
    return result


def test_the_five_charts_have_the_documents_layout(tmp_path: Path) -> None:
    result = rendered(tmp_path / "out")
    charts = tmp_path / "out" / "charts"
    assert sorted(p.name for p in charts.iterdir() if p.is_dir()) == CHARTS
    rentguy = charts / "rentguy"
    for name in ("Chart.yaml", "values.yaml", "values.schema.json", "values-sandbox.yaml", "values-sevensa.yaml",
                 "values-kind.yaml"):
        assert (rentguy / name).is_file(), name
    assert sorted(p.name for p in (rentguy / "templates").iterdir()) == [
        "configmap.yaml", "deployment.yaml", "ingress.yaml", "namespace.yaml", "networkpolicy.yaml", "service.yaml",
        "serviceaccount.yaml"]  # its StatefulSets are the subcharts' (the ServiceAccounts are RBAC's, here)
    assert sorted(p.name for p in (rentguy / "charts" / "postgresql" / "templates").iterdir()) == [
        "configmap.yaml", "service.yaml", "statefulset.yaml"]
    # rentguy-redis: the charts/redis subchart, as the document lays it out
    assert sorted(p.name for p in (rentguy / "charts" / "redis" / "templates").iterdir()) == [
        "service.yaml", "statefulset.yaml"]
    redis_sts = (rentguy / "charts" / "redis" / "templates" / "statefulset.yaml").read_text()
    assert "kind: StatefulSet" in redis_sts and "  name: rentguy-redis\n" in redis_sts
    assert "rentguy-redis" not in (rentguy / "templates" / "service.yaml").read_text()
    assert yaml.safe_load((rentguy / "charts" / "redis" / "Chart.yaml").read_text())["name"] == "redis"
    for chart in ("psra", "wpcs", "sevensa-infra", "ai-orchestration"):
        assert not (charts / chart / "charts" / "redis").exists()
    for chart in ("psra", "wpcs", "sevensa-infra"):
        assert (charts / chart / "charts" / "postgresql" / "Chart.yaml").is_file()
    assert not (charts / "ai-orchestration" / "charts").exists()  # the AI services have no PostgreSQL of their own
    meta = yaml.safe_load((rentguy / "Chart.yaml").read_text())
    assert meta["dependencies"] == [{"name": "postgresql", "version": "0.1.0", "condition": "postgresql.enabled"},
                                    {"name": "redis", "version": "0.1.0", "condition": "redis.enabled"}]
    # values: the production defaults; each environment's file holds only what its runbook changes
    values = yaml.safe_load((rentguy / "values.yaml").read_text())
    assert values["global"]["replicas"] == {"rentguy-api": 3, "rentguy-frontend": 2}
    assert values["global"]["domain"] == "sevensa.nl" and values["postgresql"] == values["redis"] == {"enabled": True}
    assert json.loads((rentguy / "values.schema.json").read_text())["required"] == ["global", "postgresql", "redis"]
    sandbox = yaml.safe_load((rentguy / "values-sandbox.yaml").read_text())
    assert sandbox == {"global": {"domain": "sevensa.test", "replicas": {"rentguy-api": 2, "rentguy-frontend": 1}}}
    assert yaml.safe_load((rentguy / "values-sevensa.yaml").read_text()) == {}
    # no Secret in any chart: they come from the runbook's secret references (kube.secret)
    assert not list(charts.rglob("secret.yaml"))
    assert any("lint clean" in line and "Helm renders exactly the" in line for line in result.said)  # type: ignore[attr-defined]


def test_helm_renders_exactly_what_the_migration_applies(tmp_path: Path) -> None:
    """Beside `render`'s own check: Helm's objects against what each manifest step's own templates()
    renders (the adoption test below checks them against what the engine really applied)."""
    from migrator.steps.kube import manifest_uses

    rendered(tmp_path / "out")
    charts = tmp_path / "out" / "charts"
    for runbook in RUNBOOKS:
        rb = load_runbook(REPO / runbook, check_secrets=False)
        applied: dict[str, dict[str, Any]] = {}
        for use in manifest_uses(rb):
            for obj in use.objects:
                applied[render.describe(obj)] = obj
        from_helm: dict[str, dict[str, Any]] = {}
        for chart in CHARTS:
            ns = {"ai-orchestration": "ai", "sevensa-infra": "infra"}.get(chart, chart)
            for obj in helm.render(charts / chart, [charts / chart / "values.yaml",
                                                    charts / chart / f"values-{rb.name}.yaml"],
                                   release=chart, namespace=ns):
                key = render.describe(obj)
                assert key not in from_helm, f"{key} in two charts"
                from_helm[key] = obj
        assert sorted(from_helm) == sorted(applied)
        for key, obj in applied.items():
            assert from_helm[key] == obj, key
        assert len(applied) == 175  # every object of phases 1-3's manifest steps (Secrets are not manifests)


def test_lint_catches_a_broken_subchart_and_the_comparison_a_changed_template(tmp_path: Path) -> None:
    result = rendering.build([load_runbook(REPO / "runbooks/sandbox.yaml", check_secrets=False)])
    broken: list[str] = []

    def tamper_then_check(r: rendering.Rendered) -> None:
        sts = r.out / "charts/psra/charts/postgresql/templates/statefulset.yaml"
        sts.write_text(sts.read_text().replace("kind: StatefulSet", "kind: StatefulSet\n  oops: [x", 1))
        dep = r.out / "charts/rentguy/templates/deployment.yaml"
        dep.write_text(dep.read_text().replace("periodSeconds: 10", "periodSeconds: 11", 1))
        try:
            rendering.check(r)
        except PermanentError as exc:
            broken.append(str(exc))
            raise

    with pytest.raises(PermanentError):
        rendering.write(result, tmp_path / "out", tamper_then_check)
    assert "psra/charts/postgresql: templates/statefulset.yaml: unable to parse YAML" in broken[0]
    assert "rentguy for sandbox: Deployment rentguy/rentguy-frontend: " \
           ".spec.template.spec.containers[0].livenessProbe.periodSeconds: 10 vs Helm's 11" in broken[0]
    # nothing was put in place
    assert not (tmp_path / "out" / "charts").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_the_values_schema_refuses_a_typo_and_a_wrong_type(tmp_path: Path) -> None:
    rendered(tmp_path / "out", ["runbooks/sandbox.yaml"])
    chart = tmp_path / "out" / "charts" / "rentguy"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"global": {"replica": {"rentguy-api": 2}}}))
    with pytest.raises(PermanentError, match="additional properties 'replica' not allowed"):
        helm.render(chart, [bad], release="rentguy", namespace="rentguy")
    bad.write_text(yaml.safe_dump({"global": {"replicas": {"rentguy-api": "two"}}}))
    with pytest.raises(PermanentError, match="rentguy-api"):
        helm.render(chart, [bad], release="rentguy", namespace="rentguy")


def test_argocd_applications_follow_the_runbook(tmp_path: Path) -> None:
    rendered(tmp_path / "out")
    apps = {p.stem: yaml.safe_load(p.read_text()) for p in (tmp_path / "out" / "argocd" / "sevensa").glob("*.yaml")}
    assert sorted(apps) == CHARTS
    app = apps["rentguy"]
    assert app["metadata"] == {"name": "rentguy", "namespace": "argocd",
                               "labels": {"app.kubernetes.io/part-of": "sevensa",
                                          "sevensa.migrator/environment": "sevensa"}}
    assert "finalizers" not in app["metadata"]  # deleting the Application leaves the workloads
    assert app["spec"]["source"] == {
        "repoURL": "https://github.com/sevensa/kubernetes-manifests.git", "targetRevision": "HEAD",
        "path": "charts/rentguy", "helm": {"releaseName": "rentguy", "valueFiles": ["values.yaml", "values-sevensa.yaml"]}}
    assert app["spec"]["destination"] == {"server": "https://kubernetes.default.svc", "namespace": "rentguy"}
    assert app["spec"]["syncPolicy"] == {"automated": {"prune": True, "selfHeal": True},
                                         "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"]}
    assert apps["sevensa-infra"]["spec"]["destination"]["namespace"] == "infra"
    assert apps["ai-orchestration"]["spec"]["destination"]["namespace"] == "ai"


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "mine" / "charts").mkdir(parents=True)
    (tmp_path / "mine" / "charts" / "keep.txt").write_text("hand-written")
    r = migrate("render", "--out", str(tmp_path / "mine"), "--runbook", str(REPO / "runbooks/sandbox.yaml"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"{tmp_path / 'mine' / 'charts'}: exists and was not written by `migrate render` "
        "(no .generated-by-migrate-render); refusing to replace it: give another --out or remove it"]
    assert (tmp_path / "mine" / "charts" / "keep.txt").read_text() == "hand-written"
    # a step with its own vars cannot be a chart value
    rb = kube_runbook(tmp_path / "rb", tmp_path / "kubeconfig", extra_phases={
        2: [{"id": "odd", "uses": "kube.apply", "with": {"sets": ["rentguy"], "vars": {"domain": "x.test"}}}]})
    with pytest.raises(InputError, match="step odd: its own `vars:` or `namespaces:` cannot be expressed"):
        rendering.build([load_runbook(rb, check_secrets=False)])


def test_render_again_replaces_the_tree(tmp_path: Path) -> None:
    first = rendered(tmp_path / "out", ["runbooks/sandbox.yaml", "runbooks/sevensa.yaml"])
    assert (tmp_path / "out/charts/rentguy/values-sevensa.yaml").is_file()
    (tmp_path / "out" / "README.md").write_text("mine")  # beside charts/ and argocd/: left alone
    second = rendered(tmp_path / "out", ["runbooks/sandbox.yaml"])
    assert not (tmp_path / "out/charts/rentguy/values-sevensa.yaml").exists()
    assert not (tmp_path / "out/argocd/sevensa").exists()
    assert (tmp_path / "out" / "README.md").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "argocd", "charts"]
    same = {k: v for k, v in first.files.items() if "sevensa" not in k.split("/")[-1] and "/sevensa/" not in k}
    assert {k: second.files[k] for k in same if k in second.files} == {
        k: v for k, v in same.items() if k in second.files}  # deterministic output


def _live(kubeapi: Any, obj: dict[str, Any]) -> dict[str, Any]:
    from migrator.sandbox.kubeapi.resources import by_kind

    res = by_kind(obj["kind"])
    assert res is not None
    live = kubeapi.store.get(res.key, obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
    assert live is not None, render.describe(obj)
    return dict(live)


def test_argocd_adopting_the_migrated_objects_changes_nothing(kubeapi: Any, tmp_path: Path) -> None:
    """Phases 1-3's manifest steps applied by the engine against the stand-in; then every object Helm renders
    is server-side applied as ArgoCD would (field manager argocd-controller, its tracking annotation), dry run:
    no conflict with `migrator`, and nothing but that annotation and managedFields would change."""
    from migrator.adapters.kube import KubeCluster, Ref
    from migrator.runbook.environment import TargetConfig

    sandbox = yaml.safe_load((REPO / "runbooks/sandbox.yaml").read_text())
    manifest_vars = {k: sandbox["vars"][k] for k in ("domain", "namespaces", "replicas")}
    sets = ["infra", "ingress", "monitoring", "logging", "rentguy", "psra", "wpcs", "ai"]
    rb = kube_runbook(tmp_path / "rb", kubeapi.kubeconfig, vars=manifest_vars, extra_phases={2: [
        {"id": "deploy", "uses": "kube.apply", "with": {"sets": sets}, "gate": {"timeout": 60, "interval": 0.2}}]})
    engine(rb, tmp_path / "state").run()
    result = rendering.run([load_runbook(rb, check_secrets=False)], tmp_path / "out", lambda _line: None)
    charts = tmp_path / "out" / "charts"
    kube = KubeCluster(TargetConfig(kubeconfig=str(kubeapi.kubeconfig), ingress_address="127.0.0.1"), tmp_path)
    rv_before = kubeapi.store.current_rv()
    adopted = 0
    for chart in result.charts:
        ns = {"ai-orchestration": "ai", "sevensa-infra": "infra"}.get(chart, chart)
        for obj in helm.render(charts / chart, [charts / chart / "values.yaml", charts / chart / "values-kube-test.yaml"],
                               release=chart, namespace=ns):
            live = _live(kubeapi, obj)
            tracking = f"{chart}:{obj['apiVersion'].split('/')[0] if '/' in obj['apiVersion'] else ''}/{obj['kind']}:" \
                       f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
            body = json.loads(json.dumps(obj))
            body["metadata"].setdefault("annotations", {})["argocd.argoproj.io/tracking-id"] = tracking
            status, after = kube.request("PATCH", Ref.of(obj).path(),
                                         [("fieldManager", "argocd-controller"), ("dryRun", "All")], body,
                                         "application/apply-patch+yaml")
            assert status == 200, (render.describe(obj), after.get("message"))
            for side in (after, live):
                side["metadata"].pop("managedFields", None)
                (side["metadata"].get("annotations") or {}).pop("argocd.argoproj.io/tracking-id", None)
                if side["metadata"].get("annotations") == {}:
                    side["metadata"].pop("annotations")
            assert after == live, render.describe(obj)
            adopted += 1
    assert adopted == 175
    assert kubeapi.store.current_rv() == rv_before  # dry runs: nothing was written
