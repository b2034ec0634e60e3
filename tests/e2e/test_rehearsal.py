"""The rehearsal (the README's main job) and what its report says."""

from __future__ import annotations

from tests.e2e.conftest import Rehearsal


def test_every_step_succeeded_and_the_report_says_so(rehearsed: Rehearsal) -> None:
    report = rehearsed.report
    assert report["result"] == "succeeded"
    assert set(rehearsed.status().values()) == {"succeeded"}
    assert sorted(report["phases"]) == ["1", "2", "3", "4", "5"]
    assert all(p["succeeded"] == p["steps"] for p in report["phases"].values())
    steps = {s["id"]: s for s in report["steps"]}
    assert all(s["attempts"] >= 1 and s["duration_s"] is not None for s in steps.values())
    assert report["copied"]["rows"] > 1000 and report["copied"]["bytes"] > 100_000
    assert report["gates_passed_count"] >= len(steps)
    # The write-downtime window runs from the freeze to DNS verified on every authoritative server.
    assert 0 < report["write_downtime_s"] < 120
    assert (rehearsed.state_dir / "sandbox.report.md").read_text().startswith("# Rehearsal report: sandbox")


def test_the_report_draws_the_night(rehearsed: Rehearsal) -> None:
    import xml.etree.ElementTree as ET

    steps = rehearsed.report["steps"]
    assert all(s["started_at"] <= s["finished_at"] and s["start"] and s["end"] for s in steps)
    root = ET.parse(rehearsed.state_dir / "sandbox.timeline.svg").getroot()
    rects = list(root.iter("{http://www.w3.org/2000/svg}rect"))
    assert sorted(r.get("data-step") for r in rects if r.get("class") == "step") == sorted(s["id"] for s in steps)
    shade = [r for r in rects if r.get("class") == "downtime"]
    assert len(shade) == 1 and float(shade[0].get("width")) > 1
    assert "sandbox.timeline.svg" in (rehearsed.state_dir / "sandbox.report.md").read_text()


def test_the_live_page_showed_a_copy_while_the_rehearsal_ran(rehearsed: Rehearsal) -> None:
    """`migrate serve` on the rehearsal's state, in Chromium: a copy's bytes, rate and bar, on the page and in
    the screenshot (its filled part as long as the bytes done say), while the step ran."""
    from tests.cli.test_serve_browser import HEIGHT, WIDTH
    from tests.e2e.live_view import BYTES_COPY
    from tests.pngpixels import near, read_png

    view = rehearsed.live_view
    assert view.error is None, view.error
    cap = view.capture
    assert cap is not None, f"the page never showed a copy in progress ({view.polls} looks)"
    uses = {s["id"]: s["uses"] for s in rehearsed.report["steps"]}
    assert uses[cap.step] in ("volume.copy", "postgres.copy", "mysql.copy"), (cap.step, uses.get(cap.step))
    assert BYTES_COPY.search(cap.text), cap.text
    width, height, _ = read_png(cap.page_png)
    assert (width, height) == (WIDTH, HEIGHT)
    bar_width, bar_height, rows = read_png(cap.bar_png)
    filled = sum(near(px, (0x15, 0x65, 0xC0)) for px in rows[bar_height // 2]) / bar_width  # .copy's accent
    assert abs(filled - cap.value / cap.maximum) < 0.05, (filled, cap.value, cap.maximum)


def test_the_platform_moved(rehearsed: Rehearsal) -> None:
    ref, before = rehearsed.reference, rehearsed.before
    # DNS: every public record now points at the cluster's ingress.
    flipped = [r for r in ref["dns"] if r.startswith(("rentguy ", "api.rentguy ", "auth ", "wpcs "))]
    assert flipped and all("127.0.0.20" in r for r in flipped), flipped
    # Databases: each StatefulSet's Postgres holds its data, replication removed.
    for name in ("rentguy", "psra", "wpcs", "keycloak"):
        db = ref["databases"][name]
        assert db != "absent" and db["_subscriptions"] == []
        assert sum(count for key, (count, _) in
                   ((k, v) for k, v in db.items() if not k.startswith("_"))) > 0
    assert before["databases"]["rentguy"] == "absent"
    # OpenBao, Kubernetes, uploads, Keycloak's hostname, and the VPS decommissioned.
    assert len(ref["openbao"]["secret"]) >= 10
    assert any(k.startswith("statefulsets/rentguy/") for k in ref["kube"])
    assert len(ref["uploads"]) > 100
    assert ref["keycloak_hostname"] == "auth.sevensa.test"
    assert ref["vps"] == []


def test_resuming_a_finished_rehearsal_changes_nothing(rehearsed: Rehearsal) -> None:
    from migrator.sandbox import snapshot
    from tests.util import migrate

    proc = migrate("run", "--yes", *rehearsed.args(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "▶" not in proc.stdout  # every step already done
    assert snapshot.differences(rehearsed.reference, snapshot.take()) == []


def test_nothing_left_behind(rehearsed: Rehearsal) -> None:
    """Every stateful thing on the VPS moved or excluded, and each kind of store moved and proven."""
    report = rehearsed.report
    cov = report["coverage"]
    assert cov["percent"] == 100.0 and cov["unmapped"] == [] and cov["total"] >= 20
    moved = report["moved_by_kind"]
    assert moved["mysql"]["tables"] >= 13 and moved["mysql"]["copies"] == 2  # phase 3, and after the freeze
    assert moved["redis"]["keys"] >= 2 * 600 and moved["redis"]["keys_with_ttl"] >= 2 * 100
    assert moved["volumes"]["copies"] >= 6 and moved["volumes"]["files"] > 300
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["parity-n8n"]["figures"]["items"] == 12 and steps["parity-grafana"]["figures"]["items"] == 7
    assert steps["parity-wpcs-mysql"]["figures"]["rows"] > 1000
    # The backup before the flip: every target database (Postgres, WordPress's MariaDB, RentGuy's Redis),
    # OpenBao's snapshot, each volume target.
    (backup,) = report["backups"]
    assert backup["status"] == "succeeded" and backup["artefacts"] >= 4 + 1 + 1 + 1 + 3 and backup["bytes"] > 100_000
    manifest = rehearsed.backup_manifests[backup["folder"]]  # backup.json was there after the rehearsal
    assert len(manifest["artefacts"]) == backup["artefacts"], manifest
    kinds = [a["kind"] for a in manifest["artefacts"]]
    assert kinds.count("mysql") == 1 and kinds.count("redis") == 1 and "not_included" not in manifest, kinds
    (redis_art,) = [a for a in manifest["artefacts"] if a["kind"] == "redis"]
    assert redis_art["keys"] >= 600, redis_art
    assert steps["final-parity-rentguy-redis"]["figures"]["db0"]["by_type"]["stream"] == 1
    # The figures, for whoever runs this by hand (pytest -s).
    for sid in ("copy-wpcs-mysql", "final-sync-wpcs-mysql", "copy-rentguy-redis", "final-sync-rentguy-redis",
                "copy-n8n-data", "copy-grafana-data", "parity-wpcs-mysql", "parity-rentguy-redis"):
        print(f"FIGURE {sid}: {steps[sid]['duration_s']} s {steps[sid]['figures']}")
    print(f"FIGURE moved_by_kind: {moved}")
    print(f"FIGURE coverage: {cov['percent']}% of {cov['total']}, excluded: {cov['excluded']}")
    print(f"FIGURE write_downtime_s: {report['write_downtime_s']}")
