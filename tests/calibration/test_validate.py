"""Validate: false alarms on held-out good frames, detections of known defects, tuned thresholds,
the verdict in the store, and the HTML report with its images."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from calib_helpers import PRODUCT, good_frame, part_scene
from differad_edge.calibration.build import build_candidate
from differad_edge.calibration.commands import run_validation
from differad_edge.calibration.config import ValidateConfig
from differad_edge.calibration.validate import Sample, validate_reference

from differad_edge.errors import CalibrationError, ReferenceError
from differad_edge.images import save_image


def test_good_candidate_passes_and_report_has_its_images(store, session, defects_dir: Path, tmp_path: Path) -> None:
    version = build_candidate(store, session)
    result = run_validation(
        store, PRODUCT, version, session=session, defects_dir=defects_dir, report_dir=tmp_path / "report"
    )
    summary = result.to_json()
    assert result.passed, result.reasons
    assert summary["n_good"] == 4
    assert summary["n_defect"] == 4
    assert summary["false_alarm_rate"] == 0.0
    assert summary["detection_rate"] >= 0.75
    info = store.info(PRODUCT, version)
    assert info.status == "validated"
    assert info.validation["report"]["golden"] == {"k": result.chosen.k, "abs_threshold": result.chosen.abs_threshold}

    html = (tmp_path / "report" / "index.html").read_text()
    assert "PASSED" in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    for name in ("images/reference.png", "images/variation.png", "images/mask.png"):
        assert name in sources
    assert sum("_residual.png" in s for s in sources) == 8
    assert sum("_detections.png" in s for s in sources) == 8
    for src in sources:
        data = (tmp_path / "report" / src).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_thresholds_are_tuned_to_the_false_alarm_target(store, session) -> None:
    version = build_candidate(store, session)
    reference = store.load(PRODUCT, version)
    base = part_scene(0)
    clean = [Sample(f"c{i}", good_frame(base, 500 + i, noise=2.0)) for i in range(5)]
    noisy = [Sample(f"n{i}", good_frame(base, 600 + i, noise=9.0)) for i in range(5)]
    cfg = ValidateConfig(k_grid=[2, 4, 8, 16], abs_grid=[5, 10, 20, 40, 80])
    on_clean = validate_reference(reference, clean, cfg)
    on_noisy = validate_reference(reference, noisy, cfg)
    assert on_clean.passed
    assert on_noisy.passed
    assert on_noisy.chosen.tolerance > on_clean.chosen.tolerance  # noisier good parts need a looser band
    loosest = max(on_noisy.grid, key=lambda g: g.tolerance)
    tightest = min(on_noisy.grid, key=lambda g: g.tolerance)
    assert loosest.false_alarm_rate == 0.0
    assert tightest.false_alarm_rate == 1.0
    # the tightest setting that still meets the target, then loosened by the safety margin
    best = on_noisy.tightest
    assert all(g.tolerance >= best.tolerance for g in on_noisy.grid if g.false_alarm_rate == 0.0)
    m = on_noisy.config.margin
    assert (on_noisy.chosen.k, on_noisy.chosen.abs_threshold) == pytest.approx((best.k * m, best.abs_threshold * m))
    assert on_noisy.golden == {"k": on_noisy.chosen.k, "abs_threshold": on_noisy.chosen.abs_threshold}


def test_failing_candidate_cannot_replace_the_active_reference(store, session, tmp_path: Path) -> None:
    good = build_candidate(store, session)
    assert run_validation(store, PRODUCT, good, session=session).passed
    store.promote(PRODUCT, good)
    before = store.load(PRODUCT)

    bad = build_candidate(store, session)
    changed = tmp_path / "other_variant"  # good parts of a different variant: every setting alarms
    changed.mkdir()
    for i in range(4):
        save_image(changed / f"{i}.png", good_frame(part_scene(1), i))
    result = run_validation(store, PRODUCT, bad, good_dirs=[changed], report_dir=tmp_path / "r")
    assert not result.passed
    assert "no threshold meets the false-alarm target" in result.reasons[0]
    assert store.info(PRODUCT, bad).status == "rejected"
    assert "FAILED" in (tmp_path / "r" / "index.html").read_text()
    with pytest.raises(ReferenceError, match="rejected, not validated"):
        store.promote(PRODUCT, bad)
    assert store.active_version(PRODUCT) == good
    after = store.load(PRODUCT)
    assert after.sha256 == before.sha256
    assert np.array_equal(after.image, before.image)


def test_validating_the_active_reference_is_refused_before_any_run(store, session, tmp_path: Path) -> None:
    good = build_candidate(store, session)
    assert run_validation(store, PRODUCT, good, session=session).passed
    store.promote(PRODUCT, good)
    tuned = store.load(PRODUCT).metadata
    changed = tmp_path / "other_variant"  # frames that would fail it and wipe its tuned thresholds
    changed.mkdir()
    for i in range(4):
        save_image(changed / f"{i}.png", good_frame(part_scene(1), i))
    with pytest.raises(ReferenceError, match="active, validated version"):
        run_validation(store, PRODUCT, good, good_dirs=[changed], report_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert store.info(PRODUCT, good).status == "validated"
    assert store.load(PRODUCT).metadata == tuned


def test_missed_defects_fail_validation(store, session, tmp_path: Path, base_scene: np.ndarray) -> None:
    version = build_candidate(store, session)
    faint = tmp_path / "faint"
    faint.mkdir()
    img = good_frame(base_scene, 900)
    img[60:66, 60:66] = np.clip(img[60:66, 60:66].astype(int) + 4, 0, 255)  # 4 gray levels: invisible
    save_image(faint / "d.png", img)
    (faint / "labels.json").write_text('{"d.png": [60, 60, 66, 66]}')
    result = run_validation(store, PRODUCT, version, session=session, defects_dir=faint)
    assert not result.passed
    assert result.to_json()["missed"] == ["d.png"]
    assert "detection rate 0.0%" in result.reasons[0]


def test_validation_input_errors(store, session, tmp_path: Path) -> None:
    version = build_candidate(store, session)
    with pytest.raises(CalibrationError, match="needs held-out good frames"):
        run_validation(store, PRODUCT, version)
    with pytest.raises(CalibrationError, match="labels.json not found"):
        run_validation(store, PRODUCT, version, session=session, defects_dir=tmp_path)
    (tmp_path / "labels.json").write_text('{"x.png": [5, 5, 5, 9]}')
    with pytest.raises(CalibrationError, match="has no area"):
        run_validation(store, PRODUCT, version, session=session, defects_dir=tmp_path)
    with pytest.raises(ReferenceError, match="unknown product 'nope'"):
        run_validation(store, "nope", None, session=session)
    assert store.info(PRODUCT, version).status == "candidate"  # nothing recorded on bad input


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"k_grid": [4.0, 90.0]}, "k_grid 90 x margin 1.2 exceeds GoldenConfig.k's maximum 100"),
        ({"abs_grid": [250.0]}, "abs_grid 250 x margin 1.2 exceeds GoldenConfig.abs_threshold's maximum 255"),
        ({"k_grid": [50.0], "margin": 2.5}, "keep k_grid <= 40"),
    ],
)
def test_a_grid_the_engine_could_not_load_is_refused_up_front(options: dict, words: str) -> None:
    """The chosen point x margin becomes the reference's GoldenConfig: a grid beyond its range would let a
    validation pass and write thresholds the engine refuses, so the config is refused first."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(words)):
        ValidateConfig(**options)
    ValidateConfig(k_grid=[83.0], abs_grid=[212.0])  # the largest that fit
