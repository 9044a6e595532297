"""Alignment recovers known motions to within a pixel and says so when it cannot."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from differad_edge.alignment import AlignConfig, Aligner, align, choose_motion
from differad_edge.errors import ConfigError, ImageError

from .parts import good_copy, make_product, rigid, warp

SIZE = 256


def _max_error(alignment, m: np.ndarray) -> float:
    """Largest distance (px) between reference points and their round trip reference -> frame -> reference."""
    m3 = m if m.shape == (3, 3) else np.vstack([m, [0, 0, 1]])
    ref_pts = np.array([[40, 40], [216, 40], [128, 128], [216, 216], [40, 216]], np.float64)  # pixel centers
    homo = np.hstack([ref_pts, np.ones((5, 1))]) @ m3.T
    frame_pts = homo[:, :2] / homo[:, 2:3]
    # PixelTransform uses pixel-edge coordinates: center + 0.5.
    back = alignment.warp.apply_points(frame_pts + 0.5) - 0.5
    return float(np.abs(back - ref_pts).max())


@pytest.mark.parametrize(
    ("angle", "dx", "dy"),
    [
        (0.0, 0.5, 0.0),  # sub-pixel shift
        (0.0, 3.0, -2.0),  # small shift
        (0.0, 12.4, 7.7),  # larger shift, still in ECC's capture range via the coarse level
        (3.0, 0.0, 0.0),  # rotation only
        (-6.0, 5.5, -4.0),  # rotation + shift
    ],
)
def test_recovers_rigid_motion_within_a_pixel(product, angle, dx, dy):
    m = rigid(SIZE, angle, dx, dy)
    result = align(product, warp(product, m), AlignConfig(motion="euclidean"))
    assert result.ok, result.reason
    assert result.method == "ecc"
    assert result.score > 0.9
    assert _max_error(result, m) < 1.0
    inner = (slice(30, -30), slice(30, -30))
    assert np.abs(result.aligned[inner].astype(int) - product[inner].astype(int)).mean() < 4.0


@pytest.mark.parametrize("motion", ["translation", "affine", "homography"])
def test_other_motion_models(product, motion):
    if motion == "translation":
        m = rigid(SIZE, 0.0, 4.3, -2.6)
    elif motion == "affine":
        m = np.array([[1.03, 0.02, -3.0], [-0.015, 0.98, 4.0]])
    else:
        m = np.array([[1.0, 0.01, 2.0], [0.0, 1.02, -3.0], [3e-5, 2e-5, 1.0]])
    result = align(product, warp(product, m), AlignConfig(motion=motion))
    assert result.ok, result.reason
    assert _max_error(result, m) < 1.0


def test_identity_fast_path_returns_the_frame_untouched(product):
    frame = product.copy()
    result = align(product, frame)
    assert result.ok
    assert result.method == "identity"
    assert result.warp.is_identity
    assert result.aligned is frame  # no resampling, no copy


def test_noise_alone_does_not_move_the_frame(product, rng):
    frame = np.clip(product.astype(np.float32) + rng.normal(0, 2.0, product.shape), 0, 255).astype(np.uint8)
    result = align(product, frame)
    assert result.ok
    assert _max_error(result, np.eye(3)) < 0.5


def test_feature_fallback_when_ecc_cannot_reach(product):
    m = rigid(SIZE, 0.0, 70.0, 40.0)  # far outside ECC's capture range
    ecc_only = align(product, warp(product, m), AlignConfig(features=None))
    assert not ecc_only.ok
    result = align(product, warp(product, m), AlignConfig(features="orb"))
    assert result.ok, result.reason
    assert result.method == "features"
    assert _max_error(result, m) < 1.0


def test_unrelated_images_report_failure_without_raising(product):
    other = make_product(SIZE, seed=99)
    result = align(product, other)
    assert not result.ok
    assert result.reason
    assert "alignment failed" in result.reason
    assert result.score < AlignConfig().min_score
    assert result.aligned.shape == product.shape


def test_random_noise_frame_fails(product, rng):
    noise = rng.integers(0, 256, product.shape, dtype=np.uint8)
    result = align(product, noise)
    assert not result.ok
    assert result.reason


def test_different_frame_size_maps_through_the_resize(product):
    frame = cv2.resize(warp(product, rigid(SIZE, 0, 4.0, 0.0)), (512, 512), interpolation=cv2.INTER_LINEAR)
    result = align(product, frame)
    assert result.ok, result.reason
    assert result.aligned.shape == product.shape
    # frame px (512 scale) -> reference px: x_ref = x_frame / 2 - 4
    p = result.warp.apply_points(np.array([[200.0, 300.0]]))[0]
    assert np.allclose(p, [200 / 2 - 4, 300 / 2], atol=0.5)


def test_fill_reference_shows_reference_where_the_frame_has_no_pixels(product):
    m = rigid(SIZE, 0.0, 10.0, 0.0)  # content moved right: after alignment the right strip is unseen
    frame = cv2.warpAffine(product, m, (SIZE, SIZE), borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    result = Aligner(product, AlignConfig(fill="reference")).align(frame)
    assert result.ok
    assert np.array_equal(result.aligned[:, -5:], product[:, -5:])
    black = Aligner(product, AlignConfig(fill="black")).align(frame)
    assert black.aligned[:, -5:].max() == 0


def test_aligner_is_reusable(product):
    aligner = Aligner(product)
    for dx in (1.0, -2.0, 3.5):
        m = rigid(SIZE, 0.0, dx, 0.0)
        assert _max_error(aligner.align(warp(product, m)), m) < 1.0


@pytest.mark.parametrize("bad", [None, np.zeros((0, 0), np.uint8), np.zeros((4, 4, 3), np.uint8), "not an image"])
def test_bad_input_raises_image_error(product, bad):
    with pytest.raises(ImageError):
        align(product, bad)


@pytest.mark.parametrize(
    "kwargs",
    [{"motion": "spline"}, {"size": 4}, {"levels": 0}, {"min_score": 2.0}, {"features": "surf"}, {"fill": "x"}],
)
def test_bad_config_raises_config_error(kwargs):
    with pytest.raises(ConfigError):
        AlignConfig(**kwargs)


def test_textureless_reference_is_used_as_is():
    flat = np.full((64, 64, 3), 120, np.uint8)
    frame = flat.copy()
    frame[20:30, 20:30] = 0
    result = align(flat, frame)
    assert result.ok
    assert result.method == "identity"
    assert "no texture" in result.reason
    assert result.aligned is frame


def test_fine_texture_that_vanishes_at_the_coarse_level():
    """Brushed-metal-like noise: the coarse level fails, the finer level still registers it."""
    rng = np.random.default_rng(7)
    noise = cv2.GaussianBlur(rng.normal(128, 60, (400, 400)).astype(np.float32), (0, 0), 0.8)
    ref = np.dstack([np.clip(noise, 0, 255).astype(np.uint8)] * 3)
    m = cv2.getRotationMatrix2D((199.5, 199.5), 1.0, 1.0)
    m[:, 2] += (3.0, 2.0)
    result = align(ref, warp(ref, m))
    assert result.ok, result.reason
    m3 = np.vstack([m, [0, 0, 1]])
    pts = np.array([[50.0, 50.0], [350.0, 80.0], [200.0, 330.0]])
    frame_pts = (np.hstack([pts, np.ones((3, 1))]) @ m3.T)[:, :2]
    assert np.abs(result.warp.apply_points(frame_pts + 0.5) - 0.5 - pts).max() < 1.0


# -- a real camera: perspective, scale, residual, coverage, motion choice (issue 15) ------------------
def _camera(size: int, angle: float, dx: float, dy: float, scale: float, persp: float) -> np.ndarray:
    """3x3 reference -> frame homography with scale and a projective tilt (pixel centers)."""
    c = (size - 1) / 2.0
    m = np.vstack([cv2.getRotationMatrix2D((c, c), angle, scale), [0, 0, 1]])
    m[:2, 2] += (dx, dy)
    t, ti = np.eye(3), np.eye(3)
    t[:2, 2], ti[:2, 2] = c, -c
    p = np.eye(3)
    p[2, :2] = (persp, -persp)
    return t @ p @ ti @ m


def _corner_error(result, m: np.ndarray, size: int) -> float:
    pts = np.array([[20, 20], [size - 20, 20], [size - 20, size - 20], [20, size - 20]], np.float64)
    frame = np.hstack([pts, np.ones((4, 1))]) @ m.T
    frame = frame[:, :2] / frame[:, 2:3]
    return float(np.abs(result.warp.apply_points(frame + 0.5) - 0.5 - pts).max())


def test_homography_default_fits_scale_and_tilt_that_a_rigid_model_cannot(product):
    m = _camera(SIZE, 2.0, 3.0, -2.0, 1.01, 1e-4)
    frame = warp(product, m)
    default = Aligner(product).align(frame)
    rigid_fit = Aligner(product, AlignConfig(motion="euclidean")).align(frame)
    assert AlignConfig().motion == "homography"
    assert default.motion == "homography"
    assert default.ok
    assert _corner_error(default, m, SIZE) < 0.3
    assert _corner_error(rigid_fit, m, SIZE) > 3 * _corner_error(default, m, SIZE)
    assert default.residual_px is not None
    assert default.residual_px < 0.3
    assert rigid_fit.residual_px > default.residual_px
    js = default.to_json()
    assert js["motion"] == "homography"
    assert js["residual_px"] == round(default.residual_px, 3)
    assert 0.8 < js["coverage"] < 1.0


def test_choose_motion_takes_the_simplest_model_that_fits(product):
    rng = np.random.default_rng(5)
    rigid_frames = [warp(product, rigid(SIZE, rng.uniform(-2, 2), *rng.uniform(-3, 3, 2))) for _ in range(3)]
    motion, residuals = choose_motion(product, rigid_frames)
    assert motion == "euclidean", residuals
    tilted = [warp(product, _camera(SIZE, rng.uniform(-2, 2), *rng.uniform(-3, 3, 2), 1.01, 1.2e-4)) for _ in range(3)]
    motion, residuals = choose_motion(product, tilted)
    assert motion == "homography", residuals
    assert residuals["homography"] < residuals["euclidean"]


def test_coverage_marks_the_seam_where_the_frame_has_no_pixels(product):
    m = rigid(SIZE, 0.0, 10.0, 0.0)  # content moved right: the right strip of the reference is unseen
    frame = cv2.warpAffine(product, m, (SIZE, SIZE), borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    result = Aligner(product).align(frame)
    assert result.ok
    assert result.valid is not None
    assert result.valid.shape == (SIZE, SIZE)
    assert result.valid[:, -9:].max() == 0
    assert result.valid[5:-5, 5:-14].min() == 255
    assert Aligner(product).align(product.copy()).valid is None  # identity: covers everything


def test_a_large_defect_does_not_pull_the_warp(product):
    """ECC minimizes squared differences: without the robust refit a big dark blob bends the fit."""
    m = _camera(SIZE, 3.0, -6.0, 4.0, 1.0, 0.0)
    frame = good_copy(warp(product, m), np.random.default_rng(2), noise=2.0)
    cv2.circle(frame, (170, 80), 10, (5, 5, 5), -1)
    robust = Aligner(product).align(frame)
    plain = Aligner(product, AlignConfig(robust=False)).align(frame)
    assert _corner_error(robust, m, SIZE) < 0.3
    assert _corner_error(plain, m, SIZE) > _corner_error(robust, m, SIZE)


@pytest.mark.parametrize("direction", [0.0, 2.0, 4.0])
def test_low_contrast_periodic_texture_under_a_light_gradient(direction):
    """A brick-like texture (16 px courses, 2 px mortar, 14 gray levels of contrast) lit by a ±15 %
    gradient: the gradient is as strong as the texture, which made gray ECC diverge (ok=False on
    every such frame before the high-passed retry); now it registers within a pixel."""
    rng = np.random.default_rng(int(direction))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    mortar = ((yy % 16) < 2) | (((xx + (yy // 16 % 2) * 16) % 32) < 2)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32), (0, 0), 1.0) * 4
    img = (130 + grain - 14 * mortar).astype(np.float32)
    m = rigid(SIZE, 2.0, 3.5, -2.5)
    moved = cv2.warpAffine(img, m, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
    c = (SIZE - 1) / 2
    ramp = 1 + 0.15 * ((xx - c) * np.cos(direction) + (yy - c) * np.sin(direction)) / c
    lit = moved * ramp + rng.normal(0, 1.5, moved.shape)
    ref8 = np.dstack([np.clip(img, 0, 255).astype(np.uint8)] * 3)
    tgt8 = np.dstack([np.clip(lit, 0, 255).astype(np.uint8)] * 3)
    result = align(ref8, tgt8)
    assert result.ok, result.reason
    assert result.score > 0.9
    assert _max_error(result, m) < 1.0
