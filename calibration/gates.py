"""Quality gates: which captured frames may shape a reference, and why the others may not.

Each gate compares a frame with the *set* rather than with absolute numbers, because focus and
texture differ from station to station while a bad frame stands out from its siblings:

- ``focus``: Laplacian variance relative to the set's median (blur, a smeared part);
- ``exposure``: share of clipped dark / bright pixels (glare, a lamp off);
- ``station``: normalized correlation to the set's median image (empty or changed station, a hand);
- ``stability``: motion and alignment score against the anchor frame (fixture moved, camera bumped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from differad_edge.errors import CalibrationError
from differad_edge.quality import clipped_fractions, focus_measure

from .config import GateConfig

GATES = ("focus", "exposure", "station", "stability")


@dataclass
class FrameVerdict:
    """Metrics of one frame and the gates it failed (``reasons`` maps gate name -> explanation)."""

    name: str
    focus: float = 0.0
    focus_ratio: float = 0.0
    dark_fraction: float = 0.0
    bright_fraction: float = 0.0
    station_corr: float = 0.0
    shift_px: float | None = None
    align_score: float | None = None
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return not self.reasons

    @property
    def failed_gates(self) -> list[str]:
        return [g for g in GATES if g in self.reasons]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["accepted"] = self.accepted
        return out


@dataclass
class GateReport:
    """Verdicts of a whole set plus the anchor (the most typical sharp frame) they were judged against."""

    verdicts: list[FrameVerdict]
    anchor: int
    median_focus: float

    @property
    def accepted(self) -> list[int]:
        return [i for i, v in enumerate(self.verdicts) if v.accepted]

    def summary(self) -> dict[str, Any]:
        counts = {g: sum(g in v.reasons for v in self.verdicts) for g in GATES}
        return {
            "frames": len(self.verdicts),
            "accepted": len(self.accepted),
            "rejected_by_gate": counts,
            "anchor": self.verdicts[self.anchor].name,
            "median_focus": round(self.median_focus, 3),
        }


def normalized_correlation(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Zero-mean normalized cross-correlation in [-1, 1]; 0 when either image is flat."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if valid is not None:
        a, b = a[valid], b[valid]
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 1e-9 else 0.0


def _thumbnail(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """Gray image scaled so its longest side is at most ``side``; returns it and the scale used."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, side / max(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return gray, scale


def _max_motion(matrix: np.ndarray, width: int, height: int) -> float:
    """Largest displacement of the image corners and center under a 3x3 warp (pixels)."""
    pts = np.array([[0, 0], [width, 0], [width, height], [0, height], [width / 2, height / 2]], dtype=np.float64)
    homo = np.hstack([pts, np.ones((5, 1))]) @ np.asarray(matrix, dtype=np.float64).T
    moved = homo[:, :2] / homo[:, 2:3]
    return float(np.max(np.linalg.norm(moved - pts, axis=1)))


def evaluate_gates(images: Sequence[np.ndarray], names: Sequence[str] | None = None, config: GateConfig | None = None) -> GateReport:
    """Judge every frame of a capture set; never raises for bad frames, only for an unusable set."""
    from differad_edge.alignment import AlignConfig, Aligner

    config = config or GateConfig()
    if not images:
        raise CalibrationError("no frames to judge; capture at least one frame")
    names = list(names) if names is not None else [f"frame_{i:06d}" for i in range(len(images))]
    if len(names) != len(images):
        raise CalibrationError(f"{len(names)} names for {len(images)} frames; pass one name per frame")
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        raise CalibrationError(f"frames differ in size {sorted(shapes)}; capture all frames from one camera setting")

    verdicts = [FrameVerdict(name=n) for n in names]
    thumbs: list[np.ndarray] = []
    scale = 1.0
    for v, img in zip(verdicts, images, strict=True):
        gray_full = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        v.dark_fraction, v.bright_fraction = clipped_fractions(gray_full, config.dark_level, config.bright_level)
        thumb, scale = _thumbnail(img, config.analysis_side)
        v.focus = focus_measure(thumb)
        thumbs.append(thumb)

    median_focus = float(np.median([v.focus for v in verdicts]))
    median_img = np.median(np.stack(thumbs), axis=0).astype(np.float32)
    for v, thumb in zip(verdicts, thumbs, strict=True):
        v.focus_ratio = v.focus / median_focus if median_focus > 0 else 0.0
        if v.focus_ratio < config.focus_min_ratio:
            v.reasons["focus"] = (
                f"blurred or no texture: sharpness {v.focus_ratio:.2f} x the set's median (minimum {config.focus_min_ratio:.2f}); "
                "refocus, stop motion, clean the lens or check the part is present"
            )
        if v.dark_fraction > config.max_dark_fraction:
            v.reasons["exposure"] = (
                f"under-exposed: {v.dark_fraction:.1%} of pixels <= {config.dark_level} "
                f"(maximum {config.max_dark_fraction:.1%}); raise exposure or light"
            )
        elif v.bright_fraction > config.max_bright_fraction:
            v.reasons["exposure"] = (
                f"over-exposed: {v.bright_fraction:.1%} of pixels >= {config.bright_level} "
                f"(maximum {config.max_bright_fraction:.1%}); lower exposure or remove glare"
            )
        v.station_corr = normalized_correlation(thumb, median_img)

    candidates = [i for i, v in enumerate(verdicts) if not v.reasons] or list(range(len(verdicts)))
    anchor = max(candidates, key=lambda i: verdicts[i].station_corr)
    h, w = thumbs[anchor].shape
    aligner = Aligner(
        cv2.cvtColor(thumbs[anchor], cv2.COLOR_GRAY2RGB),
        AlignConfig(motion="euclidean", min_score=config.min_align_score, fill="black"),
    )
    for i, (v, thumb) in enumerate(zip(verdicts, thumbs, strict=True)):
        if i == anchor:
            v.shift_px, v.align_score = 0.0, 1.0
            continue
        result = aligner.align(cv2.cvtColor(thumb, cv2.COLOR_GRAY2RGB))
        v.align_score = float(result.score)
        if result.ok:
            aligned = cv2.cvtColor(result.aligned, cv2.COLOR_RGB2GRAY)
            valid = cv2.warpPerspective(np.ones_like(thumb), result.warp.matrix, (w, h), flags=cv2.INTER_NEAREST) > 0
            corr = normalized_correlation(aligned, thumbs[anchor], valid)
            # the raw correlation judges an empty station; the aligned one forgives a small shift
            v.station_corr = max(v.station_corr, corr)
            v.shift_px = _max_motion(result.warp.matrix, w, h) / scale
        if v.station_corr < config.station_min_corr:
            v.reasons["station"] = (
                f"station changed or empty: correlation {v.station_corr:.2f} to the other frames "
                f"(minimum {config.station_min_corr:.2f}); check the part is present and the scene unchanged"
            )
            continue
        if not result.ok:
            v.reasons["stability"] = (
                f"does not align with the anchor frame (score {v.align_score:.2f}, minimum {config.min_align_score:.2f}: "
                f"{result.reason}); keep camera and part still"
            )
        elif v.shift_px is not None and v.shift_px > config.max_shift_px:
            v.reasons["stability"] = (
                f"moved {v.shift_px:.1f} px relative to the anchor frame (maximum {config.max_shift_px:.1f}); "
                "seat the part in its fixture and keep the camera still"
            )
    return GateReport(verdicts=verdicts, anchor=anchor, median_focus=median_focus)
