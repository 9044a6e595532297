"""Variation model: center and spread per pixel, robust (median/MAD) or classic (mean/std)."""

from __future__ import annotations

import numpy as np
import pytest

from differad_edge.errors import ConfigError, ImageError
from differad_edge.variation import MAD_TO_SIGMA, build_variation_model


def test_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (16, 12, 3), dtype=np.uint8) for _ in range(5)]
    center, spread = build_variation_model(imgs, method="mean_std")
    stack = np.stack(imgs).astype(np.float64)
    assert center.dtype == np.float32 and spread.dtype == np.float32
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
