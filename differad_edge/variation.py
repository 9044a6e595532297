"""Variation model of a product from several aligned good images: a per-pixel center and spread.

The golden engine tolerates ``k * spread`` around the center, so pixels that vary between good
parts (edges, texture, glare) are not flagged while stable pixels stay sensitive.
``median_mad`` is robust to an occasional bad sample among the "good" images; ``mean_std`` is the
classic (HALCON-style) model. The MAD is scaled by 1.4826 so both spreads estimate one sigma.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from .errors import ConfigError, ImageError

VariationMethod = Literal["median_mad", "mean_std"]

#: MAD -> standard deviation for normally distributed noise.
MAD_TO_SIGMA = 1.4826


def build_variation_model(
    images: Sequence[np.ndarray], method: VariationMethod = "median_mad"
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned uint8 images (all HxW or all HxWxC) -> ``(center, spread)`` float32, same shape.

    One image gives a zero spread (the engine's absolute threshold then does all the work).

    >>> a = np.full((8, 8), 100, np.uint8)
    >>> center, spread = build_variation_model([a, a + 2, a + 4], method="mean_std")
    >>> float(center[0, 0]), round(float(spread[0, 0]), 3)
    (102.0, 1.633)
    """
    if method not in ("median_mad", "mean_std"):
        raise ConfigError(f"variation method {method!r} is unknown; use 'median_mad' or 'mean_std'")
    if isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype == np.uint8:
        images = [images]
    if len(images) == 0:
        raise ImageError("build_variation_model needs at least one good image, got none")
    first = images[0]
    for i, img in enumerate(images):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3):
            what = getattr(img, "dtype", type(img).__name__)
            raise ImageError(f"good image {i} must be a uint8 HxW or HxWxC array, got {what}; use images.load_image")
        if img.shape != first.shape:
            raise ImageError(
                f"good image {i} has shape {img.shape}, image 0 has {first.shape}; align and crop them to one size"
            )
    stack = np.stack(images, axis=0)
    if method == "mean_std":
        data = stack.astype(np.float32)
        center = data.mean(axis=0)
        spread = data.std(axis=0)
    else:
        center = np.median(stack, axis=0).astype(np.float32)
        spread = np.median(np.abs(stack.astype(np.float32) - center), axis=0) * np.float32(MAD_TO_SIGMA)
    return center.astype(np.float32), spread.astype(np.float32)


__all__ = ["MAD_TO_SIGMA", "VariationMethod", "build_variation_model"]
