"""Checks before judging: is a frame usable at all, and does its channel layout match the reference?

A blurred or over-exposed frame deviates from the reference everywhere, so a golden template would
call it a frame-sized "defect" and a model would answer anything. Such a frame is
NOT_INSPECTED(image_quality) instead. The limits are relative to the reference (focus and
brightness differ from station to station; a bad frame stands out against its own good image);
calibration may store tuned limits with the reference (``Reference.metadata["quality"]``). The
measures are the calibration gates' own (``calibration.gates`` imports them from here).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from .errors import ConfigError

#: ``Reference.metadata`` key of quality limits stored by calibration.
QUALITY_KEY = "quality"
#: Longest side of the thumbnail the measures run on: cheap at 800x800, and blur is judged relative
#: to the image size: sharpness falls below ``min_focus_ratio`` once the blur reaches about 0.5 %
#: of the image side (the mild blur of a real lens or a little motion stays well above it).
THUMB_SIDE = 160


def focus_measure(gray: np.ndarray) -> float:
    """Variance of the Laplacian: high for sharp texture, collapses under blur."""
    return float(cv2.Laplacian(gray, cv2.CV_64F, ksize=3).var())


def sharpness(gray: np.ndarray) -> float:
    """Laplacian variance over intensity variance: collapses under blur but, unlike ``focus_measure``,
    not under a gain change (both scale with gain squared), so a dark frame is not called blurred."""
    var = float(gray.astype(np.float64).var())
    return focus_measure(gray) / var if var > 1.0 else 0.0


def clipped_fractions(gray: np.ndarray, dark_level: int, bright_level: int) -> tuple[float, float]:
    """Shares of pixels at or below ``dark_level`` and at or above ``bright_level``."""
    n = float(gray.size)
    return float(np.count_nonzero(gray <= dark_level)) / n, float(np.count_nonzero(gray >= bright_level)) / n


def thumbnail_gray(rgb: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """Luminance, area-downscaled so its longest side is at most ``side``."""
    gray = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return gray
    return cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def content_weights(rgb: np.ndarray, care_mask: np.ndarray | None = None) -> np.ndarray:
    """Where the reference has something to inspect, on a thumbnail (float32, sums to 1): local
    structure (smoothed gradient magnitude, with a small floor so plain parts of the object still
    count) inside the care mask. The coverage check weighs the frame's footprint with it."""
    gray = thumbnail_gray(rgb).astype(np.float32)
    grad = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    grad = cv2.GaussianBlur(grad, (0, 0), max(1.0, gray.shape[1] / 40))
    mean = float(grad.mean())
    weights = grad + np.float32(0.05 * mean) if mean > 1e-6 else np.ones_like(gray)
    if care_mask is not None:
        care = cv2.resize(
            (np.asarray(care_mask) > 0).astype(np.uint8), gray.shape[::-1], interpolation=cv2.INTER_NEAREST
        )
        weights = weights * care
    total = float(weights.sum())
    return weights / np.float32(total) if total > 0 else np.full_like(gray, 1.0 / gray.size)


def is_monochrome(rgb: np.ndarray, tolerance: int = 3, share: float = 0.995) -> bool:
    """True when (almost) every pixel has R = G = B: a mono camera's frame replicated into RGB."""
    if rgb.ndim == 2 or rgb.shape[2] == 1:
        return True
    sample = rgb[::4, ::4].astype(np.int16)
    spread = np.abs(sample[..., 0] - sample[..., 1]) + np.abs(sample[..., 1] - sample[..., 2])
    return float(np.count_nonzero(spread <= tolerance)) >= share * spread.size


def to_gray_rgb(img: np.ndarray) -> np.ndarray:
    """Luminance replicated into three channels (uint8 or float): what a mono camera would have seen."""
    if img.ndim == 2:
        gray = img
    elif img.dtype == np.uint8:
        gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    else:
        gray = np.asarray(img, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(gray[:, :, None], 3, axis=2)


@dataclass(frozen=True)
class QualityLimits:
    """Limits of a usable frame, relative to the reference image.

    min_focus_ratio: frame focus / reference focus below this = blurred.
    max_clipped_increase: clipped-bright (or dark) share above the reference's by more than this =
        over- (or under-) exposed.
    max_gain: frame mean brightness / reference mean outside [1/max_gain, max_gain] = exposure
        changed too much to compare.
    dark_level / bright_level: gray levels that count as clipped.
    """

    min_focus_ratio: float = 0.25
    max_clipped_increase: float = 0.25
    max_gain: float = 2.0
    dark_level: int = 5
    bright_level: int = 250

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ConfigError(f"quality {f.name}={value!r} must be a finite number >= 0")
        if self.max_gain < 1:
            raise ConfigError(f"quality max_gain={self.max_gain} must be >= 1 (a ratio)")
        if not 0 <= self.dark_level < self.bright_level <= 255:
            raise ConfigError(
                f"quality dark_level={self.dark_level} / bright_level={self.bright_level} must satisfy "
                "0 <= dark < bright <= 255"
            )

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], base: QualityLimits | None = None) -> QualityLimits:
        """``base`` (default limits) updated with those calibration stored with a reference."""
        stored = metadata.get(QUALITY_KEY) or {}
        base = base or cls()
        if not isinstance(stored, dict):
            raise ConfigError(f"reference metadata {QUALITY_KEY!r} must be a mapping, got {type(stored).__name__}")
        known = {f.name for f in fields(cls)}
        updates = {k: v for k, v in stored.items() if k in known}
        return cls(**{**asdict(base), **updates}) if updates else base


@dataclass(frozen=True)
class FrameStats:
    """The measures of one image the checks compare (computed once per reference)."""

    focus: float  #: ``sharpness`` (contrast-independent)
    dark: float
    bright: float
    mean: float
    std: float
    monochrome: bool

    @classmethod
    def of(cls, rgb: np.ndarray, limits: QualityLimits) -> FrameStats:
        thumb = thumbnail_gray(rgb)
        dark, bright = clipped_fractions(thumb, limits.dark_level, limits.bright_level)
        return cls(sharpness(thumb), dark, bright, float(thumb.mean()), float(thumb.std()), is_monochrome(rgb))


def quality_problem(frame: FrameStats, reference: FrameStats, limits: QualityLimits) -> str | None:
    """Why the frame is unusable against this reference, or ``None`` when it may be judged.

    Exposure first: a dark or washed-out frame also loses contrast, and "blurred" would send the
    operator to the wrong fix.
    """
    if frame.bright - reference.bright > limits.max_clipped_increase:
        return (
            f"frame is over-exposed: {frame.bright:.0%} of pixels clipped bright (reference {reference.bright:.0%}); "
            "check exposure, glare, lighting"
        )
    if frame.dark - reference.dark > limits.max_clipped_increase:
        return (
            f"frame is under-exposed: {frame.dark:.0%} of pixels clipped dark (reference {reference.dark:.0%}); "
            "check exposure, a lamp, the lens cap"
        )
    ref_mean, mean = max(reference.mean, 1.0), max(frame.mean, 1.0)
    if not 1.0 / limits.max_gain <= mean / ref_mean <= limits.max_gain:
        return (
            f"frame brightness {frame.mean:.0f} is {mean / ref_mean:.2f}x the reference's {reference.mean:.0f} "
            f"(limit {limits.max_gain:g}x either way); check exposure and lighting"
        )
    if frame.std < 1.0 <= reference.std:
        return "frame is featureless (uniform gray levels): empty station, lens cap, or lamp off?"
    if reference.focus > 1e-6 and frame.focus < limits.min_focus_ratio * reference.focus:
        return (
            f"frame is blurred: sharpness {frame.focus / reference.focus:.0%} of the reference's "
            f"(limit {limits.min_focus_ratio:.0%}); check focus, motion blur, a dirty lens"
        )
    return None


__all__ = [
    "QUALITY_KEY",
    "FrameStats",
    "QualityLimits",
    "clipped_fractions",
    "content_weights",
    "focus_measure",
    "is_monochrome",
    "quality_problem",
    "sharpness",
    "thumbnail_gray",
    "to_gray_rgb",
]
