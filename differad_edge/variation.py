"""Variation model of a product from several aligned good images: a per-pixel center and spread.

The golden engine tolerates ``k * spread`` around the center, so pixels that vary between good
parts (edges, texture, glare) are not flagged while stable pixels stay sensitive.
``median_mad`` is robust to an occasional bad sample among the "good" images; ``mean_std`` is the
classic (HALCON-style) model. The MAD is scaled by 1.4826 so both spreads estimate one sigma.

``Photometric`` maps a frame's lighting onto the reference's (gain and offset, optionally varying
linearly across the image for a gradient), fitted robustly so the defect itself does not bend the
fit. The golden engine normalizes every target with it and calibration normalizes every good frame
with it before the variation model, so the spread measures the part, not the lamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Literal, get_args

import cv2
import numpy as np

from .errors import ConfigError, ImageError


class VariationMethod(StrEnum):
    """How good images become center and spread. Members are ``str``: a plain ``"median_mad"``
    compares, hashes and serializes as the member does."""

    MEDIAN_MAD = "median_mad"
    MEAN_STD = "mean_std"


#: The variation methods (the one list the CLIs and configs offer).
VARIATION_METHODS: tuple[VariationMethod, ...] = tuple(VariationMethod)

#: MAD -> standard deviation for normally distributed noise.
MAD_TO_SIGMA = 1.4826


def build_variation_model(
    images: Sequence[np.ndarray], method: VariationMethod | str = VariationMethod.MEDIAN_MAD
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned uint8 images (all HxW or all HxWxC) -> ``(center, spread)`` float32, same shape.

    One image gives a zero spread (the engine's absolute threshold then does all the work).

    >>> a = np.full((8, 8), 100, np.uint8)
    >>> center, spread = build_variation_model([a, a + 2, a + 4], method="mean_std")
    >>> float(center[0, 0]), round(float(spread[0, 0]), 3)
    (102.0, 1.633)
    """
    if method not in VARIATION_METHODS:
        raise ConfigError(
            f"variation method {method!r} is unknown; use one of {', '.join(repr(m.value) for m in VariationMethod)}"
        )
    method = VariationMethod(method)
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
    if method == VariationMethod.MEAN_STD:
        data = stack.astype(np.float32)
        center = data.mean(axis=0)
        spread = data.std(axis=0)
    else:
        center = np.median(stack, axis=0).astype(np.float32)
        spread = np.median(np.abs(stack.astype(np.float32) - center), axis=0) * np.float32(MAD_TO_SIGMA)
    return center.astype(np.float32), spread.astype(np.float32)


Brightness = Literal["none", "offset", "gain", "local"]
#: The photometric normalization modes (the one list the CLIs and configs offer).
BRIGHTNESS_MODES: tuple[Brightness, ...] = get_args(Brightness)
_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class Photometric:
    """Robust fit of ``target = A(x, y) * reference + B(x, y)`` and its inverse applied to a target.

    ``offset``: A = 1, B constant; ``gain``: both constant; ``local``: both linear in x and y (a light
    gradient), used only where the planes move a pixel by more than ``min_local`` gray levels
    (otherwise the global gain + offset, applied by a lookup table). The fit runs on a grid of
    about ``samples`` reference pixels inside ``care`` (and a frame's validity mask); two trimmed
    refits drop the samples a defect (or a misaligned edge) puts far off the line.
    """

    def __init__(
        self,
        reference_gray: np.ndarray,
        care: np.ndarray | None = None,
        mode: Brightness = "local",
        samples: int = 2500,
        min_local: float = 1.5,
    ) -> None:
        if mode not in BRIGHTNESS_MODES:
            raise ConfigError(f"brightness={mode!r} must be one of {', '.join(map(repr, BRIGHTNESS_MODES))}")
        ref = np.asarray(reference_gray, dtype=np.float32)
        if ref.ndim == 3:
            ref = np.ascontiguousarray(ref @ _GRAY)
        h, w = ref.shape
        self.mode, self.size, self.min_local = mode, (w, h), min_local
        allowed = np.ones((h, w), bool) if care is None else np.asarray(care) > 0
        n = max(1, int(np.count_nonzero(allowed)))
        step = max(1, int(np.sqrt(n / max(16, samples))))
        ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
        keep = allowed[ys, xs]
        self.ys, self.xs = ys[keep].astype(np.intp), xs[keep].astype(np.intp)
        self.ref = ref[self.ys, self.xs].astype(np.float64)
        self._x = (self.xs - (w - 1) / 2.0) / max(1.0, (w - 1) / 2.0)
        self._y = (self.ys - (h - 1) / 2.0) / max(1.0, (h - 1) / 2.0)
        self.tiles = int(max(1, min(16, w // 8, h // 8)))

    def _design(self, mode: str) -> np.ndarray:
        one = np.ones_like(self.ref)
        if mode == "offset":
            return one[:, None]
        if mode == "gain":
            return np.stack([self.ref, one], 1)
        return np.stack([self.ref, self.ref * self._x, self.ref * self._y, one, self._x, self._y], 1)

    def fit(self, target: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, ...] | None:
        """Coefficients (a0, ax, ay, b0, bx, by) mapping reference -> target lighting; None = no change
        measurable (mode ``none`` or too few usable samples)."""
        if self.mode == "none":
            return None
        t = target[self.ys, self.xs]
        t = (t.astype(np.float64) @ _GRAY) if t.ndim == 2 else t.astype(np.float64)
        use = np.ones(t.shape, bool) if valid is None else valid[self.ys, self.xs] > 0
        # clipped pixels carry no photometric information
        use &= (t > 2) & (t < 245) & (self.ref > 2) & (self.ref < 245)
        if np.count_nonzero(use) < 16:
            return None
        # A gain needs contrast in the reference to be measurable; a flat one allows an offset only.
        ladder = {"local": ("local", "gain", "offset"), "gain": ("gain", "offset"), "offset": ("offset",)}[self.mode]
        if float(self.ref.std()) < 2.0:
            ladder = ("offset",)
        for mode in ladder:
            if mode == "offset":  # t = ref + b
                coef = self._robust(self._design(mode), t - self.ref, use)
                return None if coef is None else (1.0, 0.0, 0.0, float(coef[0]), 0.0, 0.0)
            coef = self._robust(self._design(mode), t, use)
            if coef is None:
                continue
            out: tuple[float, ...]
            if mode == "gain":
                out = (float(coef[0]), 0.0, 0.0, float(coef[1]), 0.0, 0.0)
            else:
                out = tuple(float(v) for v in coef)
            if 0.25 <= out[0] <= 4.0:
                return out
        return None

    @staticmethod
    def _robust(design: np.ndarray, t: np.ndarray, use: np.ndarray) -> np.ndarray | None:
        """Least squares refitted twice without the samples beyond 3 robust sigmas (at least 3 levels)."""
        coef = None
        for _ in range(3):
            a, b = design[use], t[use]
            if len(b) < 2 * design.shape[1]:
                break
            try:  # normal equations: a 6x6 solve (lstsq's SVD costs ms under a busy BLAS pool)
                coef = np.linalg.solve(a.T @ a, a.T @ b)
            except np.linalg.LinAlgError:
                return None
            if not np.all(np.isfinite(coef)):
                return None
            r = t - design @ coef
            ru = r[use]
            mid = len(ru) // 2
            center = np.partition(ru, mid)[mid]
            mad = float(np.partition(np.abs(ru - center), mid)[mid]) * MAD_TO_SIGMA
            use = use & (np.abs(r - center) <= max(3.0 * mad, 3.0))  # around the bulk, not around 0
        return coef

    def _global(self, coef: tuple[float, ...]) -> tuple[float, float]:
        """The planes' average: gain and offset at the image center."""
        return coef[0], coef[3]

    def is_local(self, coef: tuple[float, ...]) -> bool:
        """Do the planes differ from their center value by more than ``min_local`` gray levels anywhere
        (at mid-gray for the gain)?"""
        return abs(coef[1]) * 128 + abs(coef[2]) * 128 + abs(coef[4]) + abs(coef[5]) > self.min_local

    def apply(self, target: np.ndarray, coef: tuple[float, ...] | None) -> np.ndarray:
        """The target (uint8, HxW or HxWx3, reference size) in the reference's lighting."""
        if coef is None:
            return target
        if self.mode != "local" or not self.is_local(coef):
            a, b = self._global(coef)
            if abs(a - 1.0) < 2e-3 and abs(b) < 0.5:
                return target
            a = a if abs(a) > 1e-3 else 1e-3
            lut = np.clip(np.round((np.arange(256, dtype=np.float32) - b) / a), 0, 255).astype(np.uint8)
            return cv2.LUT(target, lut)
        w, h = self.size
        if w * h <= 300_000:  # small frames: exact float planes are the cheaper way
            x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
            y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
            inv_a = 1.0 / np.maximum(coef[0] + coef[1] * x + coef[2] * y, 1e-3).astype(np.float32)
            shift = (-(coef[3] + coef[4] * x + coef[5] * y) * inv_a).astype(np.float32)
            if target.ndim == 3:
                inv_a, shift = cv2.merge([inv_a] * target.shape[2]), cv2.merge([shift] * target.shape[2])
            return cv2.add(cv2.multiply(target, inv_a, dtype=cv2.CV_32F), shift, dtype=cv2.CV_8U)
        # Large frames: one lookup table per tile of a 16 x 16 grid, from the planes at the tile's
        # center (within a tile they change by about a gray level; cheaper than float planes).
        n = self.tiles
        xe = np.linspace(0, w, n + 1).round().astype(int)
        ye = np.linspace(0, h, n + 1).round().astype(int)
        cx = ((xe[:-1] + xe[1:] - 1) / 2.0 - (w - 1) / 2.0) / max(1.0, (w - 1) / 2.0)
        cy = ((ye[:-1] + ye[1:] - 1) / 2.0 - (h - 1) / 2.0) / max(1.0, (h - 1) / 2.0)
        gx, gy = np.meshgrid(cx, cy)
        a = np.maximum(coef[0] + coef[1] * gx + coef[2] * gy, 1e-3)
        b = coef[3] + coef[4] * gx + coef[5] * gy
        levels = np.arange(256, dtype=np.float32)
        luts = np.clip(np.round((levels[None, None, :] - b[:, :, None]) / a[:, :, None]), 0, 255).astype(np.uint8)
        out = np.empty_like(target)
        for i in range(n):
            for j in range(n):
                ys, xs = slice(ye[i], ye[i + 1]), slice(xe[j], xe[j + 1])
                cv2.LUT(target[ys, xs], luts[i, j], dst=out[ys, xs])
        return out

    def normalize(self, target: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """``apply(target, fit(target, valid))``."""
        return self.apply(target, self.fit(target, valid))


__all__ = [
    "BRIGHTNESS_MODES",
    "MAD_TO_SIGMA",
    "VARIATION_METHODS",
    "Brightness",
    "Photometric",
    "VariationMethod",
    "build_variation_model",
]
