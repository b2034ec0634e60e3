"""The sevensa-infra chart's Velero BackupStorageLocation and Schedule: off by default (no runbook of the
repository enables them), rendered from a runbook's vars.velero when enabled, linted by the real Helm
engine with that environment's values, their fields checked, and bad values refused by the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.adapters import helm
from migrator.errors import InputError, PermanentError
from tests.gitops.test_render import rendered
from tests.util import REPO

VELERO = {"enabled": True, "bucket": "sevensa-velero", "prefix": "cluster", "region": "eu-central-1",
          "s3Url": "https://s3.eu-central-1.amazonaws.com", "credentialSecret": "velero-s3",
          "schedule": "30 1 * * *", "ttl": "336h0m0s"}


def _runbook(tmp: Path, velero: dict[str, Any]) -> Path:
    """runbooks/sandbox.yaml under another name, with vars.velero (its phase files where they are)."""
    doc = yaml.safe_load((REPO / "runbooks" / "sandbox.yaml").read_text())
    doc["name"] = "withvelero"
    doc["phases"] = [str((REPO / "runbooks" / p).resolve()) for p in doc["phases"]]
    doc["state_dir"] = str(tmp / "state")
    doc["vars"]["velero"] = velero
    path = tmp / "runbooks" / "withvelero.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_velero_schedule_and_location_when_the_runbook_enables_them(tmp_path: Path) -> None:
    rb = _runbook(tmp_path, VELERO)
    result = rendered(tmp_path / "out", ["runbooks/sandbox.yaml", str(rb)])
    chart = tmp_path / "out" / "charts" / "sevensa-infra"
    assert "sandbox" not in result.chart_only  # off unless enabled
    assert yaml.safe_load((chart / "values.yaml").read_text())["velero"]["enabled"] is False
    assert yaml.safe_load((chart / "values-withvelero.yaml").read_text())["velero"] == VELERO
    objs = {o["kind"]: o for o in result.chart_only["withvelero"]}
    assert sorted(objs) == ["BackupStorageLocation", "Schedule"]
    bsl, schedule = objs["BackupStorageLocation"], objs["Schedule"]
    assert bsl["apiVersion"] == schedule["apiVersion"] == "velero.io/v1"
    assert bsl["metadata"]["namespace"] == schedule["metadata"]["namespace"] == "velero"
    assert bsl["spec"] == {"provider": "aws", "default": True,
                           "objectStorage": {"bucket": "sevensa-velero", "prefix": "cluster"},
                           "config": {"region": "eu-central-1", "s3Url": "https://s3.eu-central-1.amazonaws.com",
                                      "s3ForcePathStyle": "true"},
                           "credential": {"name": "velero-s3", "key": "cloud"}}
    assert schedule["spec"]["schedule"] == "30 1 * * *" and schedule["spec"]["useOwnerReferencesInBackup"] is False
    assert schedule["spec"]["template"] == {
        "includedNamespaces": ["ai", "infra", "ingress", "logging", "monitoring", "psra", "rentguy", "wpcs"],
        "storageLocation": bsl["metadata"]["name"], "ttl": "336h0m0s", "snapshotVolumes": True,
        "defaultVolumesToFsBackup": False}
    assert any("withvelero: also BackupStorageLocation" in line for line in result.said)  # type: ignore[attr-defined]
    # Only what is set is rendered: no prefix, s3Url or credential when they are empty.
    minimal = helm.render(chart, [chart / "values.yaml", _values(tmp_path, {"enabled": True, "bucket": "b"})],
                          release="sevensa-infra", namespace="infra")
    bsl = next(o for o in minimal if o["kind"] == "BackupStorageLocation")
    assert bsl["spec"] == {"provider": "aws", "default": True, "objectStorage": {"bucket": "b"},
                           "config": {"region": "us-east-1"}}

    # Linted with the environment's values: a broken Velero template is caught (with the defaults it is not rendered).
    tpl = chart / "templates" / "velero.yaml"
    tpl.write_text(tpl.read_text().replace("  default: true", "  default: {{ .nope.nope }}"))
    assert helm.lint(chart) == []
    (problem,) = helm.lint(chart, values_file=chart / "values-withvelero.yaml")
    assert "templates/velero.yaml" in problem and "nil pointer" in problem
    tpl.write_text(tpl.read_text().replace("  default: {{ .nope.nope }}", "  default: true"))

    # The schema: a bucket when enabled, a cron schedule, a Go duration, no unknown key.
    for bad, why in (({"enabled": True}, "bucket"), ({"schedule": "daily at 2"}, "schedule"),
                     ({"ttl": "30 days"}, "ttl"), ({"buckets": "x"}, "buckets")):
        with pytest.raises(PermanentError, match=why):
            helm.render(chart, [_values(tmp_path, bad)], release="sevensa-infra", namespace="infra")


def _values(tmp: Path, velero: dict[str, Any]) -> Path:
    path = tmp / "velero-values.yaml"
    path.write_text(yaml.safe_dump({"velero": velero}))
    return path


def test_enabled_without_a_bucket_is_one_line(tmp_path: Path) -> None:
    rb = _runbook(tmp_path, {"enabled": True})
    with pytest.raises(InputError, match=r"chart sevensa-infra for withvelero: vars.velero.bucket: expected the bucket"):
        rendered(tmp_path / "out", [str(rb)])
