"""Variation model: center and spread per pixel, robust (median/MAD) or classic (mean/std)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from differad_edge.errors import ConfigError, ImageError
from differad_edge.variation import MAD_TO_SIGMA, Photometric, build_variation_model


def test_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (16, 12, 3), dtype=np.uint8) for _ in range(5)]
    center, spread = build_variation_model(imgs, method="mean_std")
    stack = np.stack(imgs).astype(np.float64)
    assert center.dtype == np.float32
    assert spread.dtype == np.float32
    assert center.shape == (16, 12, 3)
    np.testing.assert_allclose(center, stack.mean(0), atol=1e-4)
    np.testing.assert_allclose(spread, stack.std(0), atol=1e-4)


def test_median_mad_ignores_one_bad_sample():
    good = [np.full((8, 8), v, np.uint8) for v in (100, 102, 98, 101, 99)]
    bad = np.full((8, 8), 250, np.uint8)  # e.g. a defective part slipped into the "good" set
    center, spread = build_variation_model([*good, bad], method="median_mad")
    assert np.all(np.abs(center - 100.5) <= 0.5)
    assert float(spread.max()) <= 2.0 * MAD_TO_SIGMA
    mean_center, mean_spread = build_variation_model([*good, bad], method="mean_std")
    assert float(mean_center[0, 0]) > 120  # the mean is dragged away, the median is not
    assert float(mean_spread[0, 0]) > 50


def test_single_image_has_zero_spread():
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    center, spread = build_variation_model([img])
    np.testing.assert_array_equal(center, img.astype(np.float32))
    assert not spread.any()


def test_mad_is_scaled_to_sigma():
    rng = np.random.default_rng(1)
    imgs = [np.clip(np.round(128 + rng.normal(0, 6, (32, 32))), 0, 255).astype(np.uint8) for _ in range(41)]
    _, spread = build_variation_model(imgs, method="median_mad")
    assert 4.5 < float(np.median(spread)) < 7.5


@pytest.mark.parametrize(
    "images",
    [[], [np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8)], [np.zeros((8, 8), np.float32)]],
)
def test_bad_images_raise(images):
    with pytest.raises(ImageError):
        build_variation_model(images)


def test_unknown_method_raises():
    with pytest.raises(ConfigError, match="median_mad"):
        build_variation_model([np.zeros((8, 8), np.uint8)], method="max")


# -- photometric normalization (issue 15) ------------------------------------------------------------
def _scene(size: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(
        rng.uniform(40, 210, (size // 8, size // 8)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
    )
    return np.clip(base, 0, 255)


@pytest.mark.parametrize("mode", ["offset", "gain", "local"])
def test_photometric_recovers_the_lighting_despite_a_defect(mode):
    ref = _scene()
    h, w = ref.shape
    x = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / ((w - 1) / 2)
    gain = {"offset": 1.0, "gain": 1.15, "local": 1.15 * (1 + 0.1 * x)[None, :]}[mode]
    target = ref * gain + 9.0
    target[40:80, 40:80] = 250  # a defect: 6 % of the frame, far off the lighting line
    t8 = np.clip(np.round(target), 0, 255).astype(np.uint8)
    photo = Photometric(ref, mode=mode)
    out = photo.normalize(np.dstack([t8] * 3))
    keep = np.ones((h, w), bool)
    keep[36:84, 36:84] = False
    assert np.abs(out[:, :, 0].astype(np.float32) - ref)[keep].mean() < 1.5
    assert out[60, 60, 0] > 200  # the defect is not normalized away


def test_photometric_flat_reference_and_none():
    flat = np.full((64, 64), 120.0, np.float32)
    photo = Photometric(flat, mode="local")
    assert photo.fit(np.full((64, 64), 130, np.uint8))[:4] == pytest.approx((1.0, 0.0, 0.0, 10.0))  # offset only
    frame = np.full((64, 64), 90, np.uint8)
    assert Photometric(flat, mode="none").normalize(frame) is frame
    with pytest.raises(ConfigError):
        Photometric(flat, mode="auto")
