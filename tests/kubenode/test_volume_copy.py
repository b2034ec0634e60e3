"""volume.copy into a real PersistentVolumeClaim: from a VPS's Docker volume (over SSH) into a claim that a
node's pods mount, written only through the API (a helper pod, pods/exec). Crash, resume, verify, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client

from migrator.adapters.kube_stream import exec_run
from migrator.adapters.kube_volume import claim_helper
from migrator.sandbox.kubeapi import ServerHandle
from migrator.steps import volume_manifest as vm
from tests.source.conftest import VPS
from tests.source.test_steps import _fill_every_kind, _inst, container
from tests.util import migrate, write_runbook

from .conftest import BASE
from .test_streams import kube_cluster

CLAIM = "uploads"


def _runbook(tmp: Path, vps: VPS, cluster: ServerHandle, ns: str) -> Path:
    env = {"source": vps.ssh_environment(),
           "target": {"kubeconfig": str(cluster.kubeconfig), "ingress_address": "127.0.0.1",
                      "data_access": "port-forward"}}
    why = "this test copies one volume"
    coverage = {"exclude": [{"database": "db/shop", "reason": why}, {"volume": "dbdata", "reason": why}]}
    copy = {"id": "copy-uploads", "uses": "volume.copy",
            "with": {"volume": "uploads", "target": CLAIM, "namespace": ns, "claim_helper_image": BASE,
                     "skip_special": ["queue.fifo"], "batch_files": 3}}
    return write_runbook(tmp, {1: [copy]}, environment=env, coverage=coverage)


def _volume_manifest(vps: VPS) -> vm.Manifest:
    out = vps.docker("exec", container(vps, "web"), "sh", "-c", vm.script("/www/uploads")).stdout
    return vm.parse(out)


def _claim_manifest(cluster: ServerHandle, tmp: Path, ns: str) -> vm.Manifest:
    from migrator.adapters.kube_volume import claim_helper
    from migrator.steps import volume_claim as vc

    kube = kube_cluster(cluster, tmp)
    try:
        with claim_helper(kube, ns, CLAIM, name="look", image=BASE, purpose="test") as pod:
            return vc.manifest(kube, vc.Claim(ns, CLAIM), pod)
    finally:
        kube.close()


def test_volume_copy_into_a_claim_crash_resume_rollback(vps: VPS, cluster: ServerHandle, core: client.CoreV1Api,
                                                        ns: str, tmp_path: Path) -> None:
    _fill_every_kind(vps)
    core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": CLAIM}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    rb, sd = _runbook(tmp_path, vps, cluster, ns), tmp_path / "state"
    plan = migrate("plan", "--runbook", str(rb), "--state-dir", str(sd))
    assert f"into PersistentVolumeClaim {ns}/{CLAIM}: through a helper pod" in plan.stdout, plan.stdout

    crashed = migrate("run", "--runbook", str(rb), "--state-dir", str(sd),
                      env={"MIGRATE_FAILPOINTS": "copy-uploads:after-file@6=crash"})
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    src = _volume_manifest(vps)
    half = _claim_manifest(cluster, tmp_path, ns)
    assert 6 <= len(half.files()) < len(src.files())
    # The crash left the helper pod behind; resume replaces it and finishes, without sending again what landed.
    resumed = migrate("resume", "--runbook", str(rb), "--state-dir", str(sd))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    facts = json.loads((sd / "test.state.json").read_text())["steps"]["copy-uploads"]["facts"]
    assert facts["files_skipped_last"] >= 6 and facts["specials_skipped"] == ["queue.fifo"]
    assert facts["verified_kinds"]["symlink"] == 3 and facts["hardlink_groups"] == 1

    whole = _claim_manifest(cluster, tmp_path, ns)
    assert vm.compare(src, whole, {"queue.fifo"}) == []  # every entry: kind, content, link, mode, owner, hard links
    e = whole.entries
    assert e["site/home.html"].link == "index.html" and e["css"].link == "site/css" and e["dangling"].link == "/etc/nowhere"
    assert e["site/index.html"].inode == e["site/index-hard.html"].inode and e["empty/deeper"].kind == "dir"
    assert (e["private.key"].mode, e["site"].mode) == (0o600, 0o2750) and e["site/css/a.css"].uid == 1001
    assert "queue.fifo" not in e
    # The claim's storage is a directory of the node (kind's local-path layout), reached here by its link.
    from migrator.sandbox.kubeapi.kubelet import claim_link

    assert (claim_link(cluster.kubelet.root, ns, CLAIM) / "site" / "index.html").read_text() == "body\n"
    # Nothing is left running: neither the helper pod on the claim nor the helper container on the VPS.
    assert [p.metadata.name for p in core.list_namespaced_pod(ns).items] == []
    assert "migrator-copy" not in vps.docker("ps", "-a", "--format", "{{.Names}}").stdout

    # The check finds a file changed in the claim; a second run copies only that one back.
    kube = kube_cluster(cluster, tmp_path)
    try:
        with claim_helper(kube, ns, CLAIM, name="spoil", image=BASE, purpose="test") as pod:
            assert exec_run(kube, ns, pod, None, ["sh", "-c", "echo changed > /data/site/img-3.bin"]).code == 0
    finally:
        kube.close()
    step = _inst(rb, sd, "copy-uploads")
    check = step.check()
    assert not check.done and "site/img-3.bin: contents differ" in check.reason, check
    step.apply()
    assert step.ctx.facts["files_total"] - step.ctx.facts["files_skipped_last"] == 1
    assert vm.compare(src, _claim_manifest(cluster, tmp_path, ns), {"queue.fifo"}) == []

    # A backup of the claim (tar made in the pod) restores it, checked file by file, after the claim changed.
    from migrator.errors import PermanentError
    from migrator.steps import volume_claim as vc

    kube = kube_cluster(cluster, tmp_path)
    claim = vc.Claim(ns, CLAIM)
    try:
        with claim_helper(kube, ns, CLAIM, name="backup", image=BASE, purpose="test") as pod:
            files = vc.archive(kube, claim, pod, tmp_path / "uploads.tar")
            assert set(files) == set(src.files()) and (tmp_path / "uploads.tar").stat().st_mode & 0o777 == 0o600
            exec_run(kube, ns, pod, None, ["sh", "-c", "rm -rf /data/site && echo new > /data/extra.txt"])
            bad = {**files, "private.key": {"sha256": "0" * 64, "size": 7}}
            with pytest.raises(PermanentError, match="do not match the manifest"):
                vc.restore(kube, claim, pod, tmp_path / "uploads.tar", bad, "volume uploads")
            assert "extra.txt" in vc.manifest(kube, claim, pod).entries  # a refused restore touched nothing
            assert vc.restore(kube, claim, pod, tmp_path / "uploads.tar", files, "volume uploads") == len(files)
            assert vm.compare(src, vc.manifest(kube, claim, pod), {"queue.fifo"}) == []
    finally:
        kube.close()

    # Rollback: the claim held nothing before the copy, so it holds nothing after.
    undone = migrate("rollback", "--runbook", str(rb), "--state-dir", str(sd), "--step", "copy-uploads", "--yes")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert set(_claim_manifest(cluster, tmp_path, ns).entries) == {"."}


def test_extended_attributes_are_refused_into_a_claim_unless_left_behind_on_purpose(
        vps: VPS, cluster: ServerHandle, core: client.CoreV1Api, ns: str, tmp_path: Path) -> None:
    """A volume whose files carry user.* attributes (read on the VPS with getfattr): the copy into a claim
    fails before writing anything, naming them; with skip_xattrs it copies and records what it left."""
    import yaml

    from tests.source.test_steps import _attr_image

    image = _attr_image(vps)
    vps.docker("run", "--rm", "-v", "shop_uploads:/v", image, "sh", "-c",
               "mkdir -p /v/xa && echo x > /v/xa/file && setfattr -n user.origin -v vps /v/xa/file")
    core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": CLAIM}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    try:
        rb, sd = _runbook(tmp_path, vps, cluster, ns), tmp_path / "state"
        phase = rb.parent / "phase1.yaml"
        doc = yaml.safe_load(phase.read_text())
        doc["steps"][0]["with"]["helper_image"] = image
        phase.write_text(yaml.safe_dump(doc, sort_keys=False))
        refused = migrate("run", "--runbook", str(rb), "--state-dir", str(sd))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        line = refused.stderr.strip().splitlines()[-1]
        assert "1 entry of volume uploads carry extended attributes (user.origin; e.g. xa/file)" in line, line
        assert "nothing was written" in line and "Traceback" not in refused.stderr
        assert _claim_manifest(cluster, tmp_path, ns).files() == {}

        doc["steps"][0]["with"]["skip_xattrs"] = True
        phase.write_text(yaml.safe_dump(doc, sort_keys=False))
        done = migrate("run", "--yes", "--accept-changes", "--runbook", str(rb), "--state-dir", str(sd))
        assert done.returncode == 0, done.stdout + done.stderr
        facts = json.loads((sd / "test.state.json").read_text())["steps"]["copy-uploads"]["facts"]
        assert facts["xattrs_unsupported"] == ["user.origin"]
        assert "xa/file" in _claim_manifest(cluster, tmp_path, ns).files()
    finally:
        vps.docker("exec", container(vps, "web"), "sh", "-c", "rm -rf /www/uploads/xa")
