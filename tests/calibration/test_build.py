"""Build: accepted frames aligned to the anchor, center/spread, care masks, stored as a candidate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from calib_helpers import PRODUCT, good_frame, shifted
from differad_edge.calibration.build import build_candidate, build_reference
from differad_edge.calibration.config import AutoMaskConfig, BuildConfig, GateConfig
from differad_edge.calibration.gates import focus_measure
from differad_edge.calibration.masks import load_care_mask
from differad_edge.calibration.session import capture

from differad_edge.errors import CalibrationError
from differad_edge.images import save_image


def test_build_stores_a_candidate_with_quality_metrics(store, session, base_scene: np.ndarray) -> None:
    version = build_candidate(store, session)
    info = store.info(PRODUCT, version)
    assert info.status == "candidate"
    assert not info.active
    assert store.active_version(PRODUCT) is None  # a build never goes live by itself
    cal = info.metadata["calibration"]
    used = set(cal["build"]["frames_used"])
    assert used == {f.name for f in session.select("build")}
    assert not used & {"f100_blurred.png", "f101_overexposed.png", "f102_shifted.png", "f103_empty.png"}
    assert not used & {f.name for f in session.select("holdout", accepted_only=False)}  # held out stays unseen
    assert cal["gates"]["rejected_by_gate"]["stability"] == 1
    ref = store.load(PRODUCT, version)
    assert np.abs(ref.image.astype(float) - base_scene.astype(float)).mean() < 1.5  # median removes the noise
    assert ref.mean.shape == ref.spread.shape == base_scene.shape
    assert 1.0 < float(np.median(ref.spread)) < 4.0  # sensor noise sigma is 2 gray levels
    assert ref.care_mask.shape == base_scene.shape[:2]
    assert ref.care_mask.min() == 255


def test_frames_are_aligned_before_they_are_combined(base_scene: np.ndarray) -> None:
    """Frames jittered by up to 3 px still give a sharp reference; unaligned they would smear."""
    offsets = [(0, 0), (3, 0), (0, 3), (-3, -2), (2, -3), (-2, 3)]
    frames = [shifted(good_frame(base_scene, i), dx, dy) for i, (dx, dy) in enumerate(offsets)]
    built = build_reference(frames, anchor=0, config=BuildConfig())
    naive = np.median(np.stack(frames), axis=0).astype(np.uint8)
    gray = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)  # noqa: E731
    sharp, smeared, truth = (focus_measure(gray(i)) for i in (built.image, naive, base_scene))
    assert sharp > 0.8 * truth
    assert smeared < 0.5 * truth
    assert built.care_mask[:, -2:].max() == 0  # borders the shifted frames do not cover are not inspected


def test_care_mask_from_polygons_and_png(tmp_path: Path, store, session) -> None:
    yaml_mask = tmp_path / "mask.yaml"
    yaml_mask.write_text(
        "care:\n  - [[40, 30], [152, 30], [152, 130], [40, 130]]\nignore:\n  - [[50, 90], [100, 90], [100, 125], [50, 125]]\n"
    )
    mask = load_care_mask(yaml_mask, (192, 160))
    assert mask[10, 10] == 0
    assert mask[60, 120] == 255
    assert mask[100, 70] == 0
    version = build_candidate(store, session, care_mask=yaml_mask)
    stored = store.load(PRODUCT, version).care_mask
    assert np.array_equal(stored > 0, mask > 0)

    png = tmp_path / "mask.png"
    save_image(png, np.dstack([mask] * 3))
    assert np.array_equal(load_care_mask(png, (192, 160)), mask)
    with pytest.raises(CalibrationError, match="is 192x160 but the frames are 100x100"):
        load_care_mask(png, (100, 100))
    yaml_mask.write_text("ignore:\n  - [[0, 0], [1, 1]]\n")
    with pytest.raises(CalibrationError, match=r"ignore\[0\] needs at least 3"):
        load_care_mask(yaml_mask, (192, 160))


def test_auto_mask_drops_pixels_that_vary_between_good_parts(base_scene: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    frames = []
    for i in range(7):
        f = good_frame(base_scene, i)
        f[100:120, 130:150] = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)  # a flickering display
        frames.append(f)
    plain = build_reference(frames, 0, BuildConfig())
    masked = build_reference(frames, 0, BuildConfig(auto_mask=AutoMaskConfig(enabled=True, max_spread=25, dilate_px=1)))
    assert plain.care_mask[110, 140] == 255
    assert masked.care_mask[100:120, 130:150].max() == 0
    assert masked.care_mask[60, 80] == 255  # stable texture stays inspected
    assert 0.01 < masked.metrics["unstable_fraction"] < 0.03  # 20x20 (+1 px) of 192x160


def test_too_few_accepted_frames_is_an_error(tmp_path: Path, store, base_scene: np.ndarray) -> None:
    folder = tmp_path / "cam"
    folder.mkdir()
    for i in range(4):
        save_image(folder / f"{i}.png", good_frame(base_scene, i))
    s = capture(PRODUCT, str(folder), 10, tmp_path / "s", holdout=0.0, gates=GateConfig(min_accepted=5))
    with pytest.raises(CalibrationError, match="only 4 frames .* passed the quality gates \\(need 5\\)"):
        build_candidate(store, s)
    assert store.products() == []


def test_frames_that_do_not_align_at_build_time_store_nothing(tmp_path: Path, store, base_scene: np.ndarray) -> None:
    """Loose gates let different scenes through; the build still refuses a reference of one aligned frame."""
    folder = tmp_path / "cam"
    folder.mkdir()
    for i in range(4):  # four unrelated textures: none of them registers on another
        noise = np.random.default_rng(i).integers(40, 215, (160, 192, 3), dtype=np.uint8)
        save_image(folder / f"{i}.png", cv2.GaussianBlur(noise, (3, 3), 0))
    loose = GateConfig(station_min_corr=-1.0, max_shift_px=1e6, min_align_score=0.0, min_accepted=3)
    s = capture(PRODUCT, str(folder), 10, tmp_path / "s", holdout=0.0, gates=loose)
    assert len(s.select("build")) >= 3
    with pytest.raises(CalibrationError, match="aligned to the anchor \\(need 3\\); nothing was stored"):
        build_candidate(store, s)
    assert store.products() == []
