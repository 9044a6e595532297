"""The audit trail (issue 16): every validation keeps its report and records inputs and operator; a
rejected version stays rejected; rollback onto an unvalidated version needs --force; failing frames
are named in the console, the manifest and first in the report; ``show`` is readable."""

from __future__ import annotations

import json
from pathlib import Path

from calib_helpers import PRODUCT, good_frame, on_product, run, with_defect

from differad_edge.fileio import sha256_file
from differad_edge.images import save_image
from differad_edge.store import ReferenceStore


def _build(capsys, store: str, session) -> str:
    code, out, err = run(capsys, "build", "--store", store, "--session", str(session.root))
    assert code == 0, err
    return out.strip().splitlines()[-1]


def _bad_good_folder(tmp_path: Path, base) -> Path:
    """'Good' frames where one carries a real blemish: every threshold alarms on it (a false alarm)."""
    folder = tmp_path / "good_with_blemish"
    folder.mkdir()
    for i in range(3):
        save_image(folder / f"g{i}.png", good_frame(base, 500 + i))
    save_image(folder / "g9_blemish.png", with_defect(good_frame(base, 509), (70, 50, 100, 80)))
    return folder


def test_each_validation_keeps_its_report_and_records_inputs_and_operator(
    capsys, tmp_path, session, defects_dir, monkeypatch
):
    store = str(tmp_path / "store")
    version = _build(capsys, store, session)
    monkeypatch.setenv("DIFFERAD_OPERATOR", "anna")
    code, out, err = on_product(
        capsys, "validate", store, "--session", str(session.root), "--defects", str(defects_dir)
    )
    assert code == 0, out + err
    code, out2, _ = on_product(
        capsys, "validate", store, "--version", version, "--session", str(session.root), "--operator", "ben"
    )
    assert code == 0, out2
    reports = sorted((session.root / "reports").iterdir())
    assert len(reports) == 2
    assert all((r / "index.html").is_file() for r in reports)
    assert all(r.name.startswith(f"report-{PRODUCT}-{version}-") for r in reports)

    events = [e for e in ReferenceStore(store).history(PRODUCT) if e["event"] == "validation"]
    assert [e["operator"] for e in events] == ["anna", "ben"]
    first = {i["name"]: i for i in events[0]["inputs"]}
    held = session.select("holdout")
    assert {f.name for f in held} <= set(first)
    assert "d0.png" in first
    assert "labels.json" in first
    assert first["d0.png"]["sha256"] == sha256_file(defects_dir / "d0.png")
    assert first["labels.json"]["kind"] == "labels"
    assert all(first[f.name]["sha256"] == f.sha256 for f in held)
    assert {i["kind"] for i in events[1]["inputs"]} == {"good"}  # the second run judged other inputs
    assert [Path(e["report_files"][0]).parent.name for e in events] == [r.name for r in reports]

    # an explicit --report folder that exists already is never overwritten
    code, _, err = on_product(
        capsys, "validate", store, "--version", version, "--session", str(session.root), "--report", str(reports[0])
    )
    assert code == 2
    assert "never overwritten" in err


def test_a_rejected_version_stays_rejected(capsys, tmp_path, session, base_scene):
    store = str(tmp_path / "store")
    version = _build(capsys, store, session)
    blemish = _bad_good_folder(tmp_path, base_scene)
    code, out, _ = on_product(capsys, "validate", store, "--good", str(blemish))
    assert code == 1
    assert "FAILED" in out
    # the easier set (the session's clean held-out frames) must not flip it to validated
    code, _, err = on_product(capsys, "validate", store, "--version", version, "--session", str(session.root))
    assert code == 2
    assert "stays rejected" in err
    assert "build a new candidate" in err
    info = ReferenceStore(store).info(PRODUCT, version)
    assert info.status == "rejected"
    assert [s["status"] for s in info.status_history] == ["candidate", "rejected"]


def test_failing_frames_are_named_everywhere(capsys, tmp_path, session, base_scene):
    store = str(tmp_path / "store")
    version = _build(capsys, store, session)
    blemish = _bad_good_folder(tmp_path, base_scene)
    config = tmp_path / "calib.yaml"
    config.write_text("validate:\n  max_report_frames: 2\n")
    report = tmp_path / "report"
    code, out, _ = on_product(
        capsys,
        "validate",
        store,
        "--session",
        str(session.root),
        "--good",
        str(blemish),
        "--config",
        str(config),
        "--report",
        str(report),
    )
    assert code == 1
    assert "  false alarm: g9_blemish.png" in out  # console
    saved = ReferenceStore(store).info(PRODUCT, version).validation["report"]  # manifest
    assert saved["false_alarms"] == ["g9_blemish.png"]
    assert saved["failing_frames"] == ["g9_blemish.png"]
    assert saved["judged_at"] is not None
    page = (report / "index.html").read_text()
    first_figure = page.index('<figure><img src="images/frame_000')
    assert page.index("g9_blemish.png", first_figure) < page.index("</figure>", first_figure)  # shown first
    total = saved["n_good"] + saved["n_defect"]
    assert f"{total - 2} frames not shown" in page


def test_rollback_onto_a_forced_version_needs_force(capsys, tmp_path, session, base_scene):
    store = str(tmp_path / "store")
    v1 = _build(capsys, store, session)
    on_product(capsys, "validate", store, "--good", str(_bad_good_folder(tmp_path, base_scene)))
    assert on_product(capsys, "promote", store, "--version", v1, "--force", "--reason", "line down")[0] == 0
    v2 = _build(capsys, store, session)
    assert on_product(capsys, "validate", store, "--session", str(session.root))[0] == 0
    assert on_product(capsys, "promote", store, "--version", v2)[0] == 0

    code, _, err = on_product(capsys, "rollback", store)
    assert code == 2
    assert "rejected" in err
    assert "--force" in err
    assert ReferenceStore(store).active_version(PRODUCT) == v2
    code, _, err = on_product(capsys, "rollback", store, "--force")
    assert code == 2
    assert "--reason" in err
    code, out, err = on_product(capsys, "rollback", store, "--force", "--reason", "v2 misses scratches")
    assert code == 0
    assert f"active version is now {v1}" in out
    assert "warning:" in err
    assert "never passed validation" in err
    last = ReferenceStore(store).history(PRODUCT)[-1]
    assert (last["event"], last["forced"], last["operator"], last["reason"]) == (
        "rollback",
        True,
        "test-engineer",
        "v2 misses scratches",
    )


def test_operator_is_required_for_what_changes_the_store(capsys, tmp_path, session, monkeypatch):
    store = str(tmp_path / "store")
    version = _build(capsys, store, session)
    monkeypatch.delenv("DIFFERAD_OPERATOR")
    code, _, err = on_product(capsys, "promote", store, "--version", version, "--force", "--reason", "x")
    assert code == 2
    assert "--operator" in err
    assert err.count("\n") == 1
    code, _, err = on_product(capsys, "validate", store, "--session", str(session.root))
    assert code == 2
    assert "DIFFERAD_OPERATOR" in err


def test_show_prints_a_summary_and_json_on_request(capsys, tmp_path, session, base_scene):
    store = str(tmp_path / "store")
    version = _build(capsys, store, session)
    on_product(capsys, "validate", store, "--good", str(_bad_good_folder(tmp_path, base_scene)), "--operator", "carla")
    code, out, _ = on_product(capsys, "show", store, "--version", version)
    assert code == 0
    assert out.startswith(f"{PRODUCT}/{version}: rejected")
    assert "validation FAILED" in out
    assert "by carla" in out
    assert "false alarm: g9_blemish.png" in out
    assert "history:" in out
    assert "report:" in out
    data = json.loads(on_product(capsys, "show", store, "--version", version, "--json")[1])
    assert data["validation"]["operator"] == "carla"
    assert data["validation"]["inputs"]


def test_capture_shows_live_progress_and_takes_all_frames(capsys, tmp_path, capture_dir):
    code, out, err = run(
        capsys, "capture", "--product", PRODUCT, "--source", str(capture_dir), "--out", str(tmp_path / "s")
    )
    assert code == 0
    assert "captured 20 frames" in out  # --frames defaults to all the source has
    assert "10 captured" in err
    assert "last rejected: blurred or no texture (f100_blurred.png)" in err


def test_an_excluded_frame_stays_out_of_build_and_validation(tmp_path, session):
    from differad_edge.calibration.build import build_candidate
    from differad_edge.calibration.commands import session_samples
    from differad_edge.calibration.session import load_session

    build_frame = session.select("build")[0].name
    held_frame = session.select("holdout")[0].name
    session.set_excluded(build_frame, True)
    session.set_excluded(held_frame, True)
    again = load_session(session.root)  # saved in session.json
    assert again.frame(build_frame).excluded
    assert again.frame(build_frame).verdict["accepted"]
    assert held_frame not in {s.name for s in session_samples(again)}
    store = ReferenceStore(tmp_path / "store")
    version = build_candidate(store, again, operator="eve")
    assert build_frame not in store.info(PRODUCT, version).metadata["calibration"]["build"]["frames_used"]
    assert store.history(PRODUCT)[-1]["operator"] == "eve"
    again.set_excluded(build_frame, False)
    assert build_frame in {f.name for f in load_session(session.root).select("build")}
