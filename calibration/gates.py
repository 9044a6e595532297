"""Quality gates: which captured frames may shape a reference, and why the others may not.

Each gate compares a frame with the *set* rather than with absolute numbers, because focus and
texture differ from station to station while a bad frame stands out from its siblings:

- ``focus``: Laplacian variance relative to the set's median (blur, a smeared part);
- ``exposure``: share of clipped dark / bright pixels against the set's median share (glare, a
  lamp off), with an absolute allowance for sets that clip nowhere;
- ``station``: normalized correlation to the set's median image (empty or changed station), and a
  *local* check: the frame aligned onto the anchor with the inspector's motion model, brought into
  the anchor's lighting by ``variation.Photometric`` (the fit build and the engine use), then
  compared tile by tile, so a hand or a tool over part of the part is caught although the global
  correlation barely moves, while gain, offset and gradient changes pass;
- ``stability``: motion against the anchor frame measured as a share of the image diagonal, so the
  same gate fits any resolution. Inside the inspector's alignment capture range a moved frame is
  kept with a warning (the aligner registers it at run time too); beyond it, or when it does not
  align, it is rejected.

Warnings (kept frames): ``stability`` (moved, but aligned) and ``duplicate`` (a near-copy of the
previous frame, e.g. a video at a high frame rate: the same part twice adds no variation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from differad_edge.errors import CalibrationError
from differad_edge.quality import clipped_fractions, focus_measure
from differad_edge.variation import Photometric

from .config import GateConfig

GATES = ("focus", "exposure", "station", "stability")
WARNINGS = ("stability", "duplicate")


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
    shift_fraction: float | None = None  # shift_px / image diagonal
    align_score: float | None = None
    tile_diff: float | None = None  # largest mean gray-level difference of one tile to the anchor
    duplicate_diff: float | None = None  # mean gray-level difference to the previous frame
    reasons: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)

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
        warned = {g: sum(g in v.warnings for v in self.verdicts) for g in WARNINGS}
        return {
            "frames": len(self.verdicts),
            "accepted": len(self.accepted),
            "rejected_by_gate": counts,
            "warned": warned,
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


def tile_differences(frame: np.ndarray, anchor: np.ndarray, valid: np.ndarray | None, tiles: int) -> np.ndarray:
    """Mean absolute gray-level difference per tile (``tiles`` x ``tiles``), over valid pixels only;
    NaN for a tile with less than half of its pixels valid (the border a shifted frame leaves)."""
    diff = np.abs(
        cv2.GaussianBlur(frame.astype(np.float32), (0, 0), 1.0)
        - cv2.GaussianBlur(anchor.astype(np.float32), (0, 0), 1.0)
    )
    ok = np.ones(diff.shape, bool) if valid is None else valid
    h, w = diff.shape
    ys = np.linspace(0, h, tiles + 1).astype(int)
    xs = np.linspace(0, w, tiles + 1).astype(int)
    out = np.full((tiles, tiles), np.nan, np.float64)
    for r in range(tiles):
        for c in range(tiles):
            m = ok[ys[r] : ys[r + 1], xs[c] : xs[c + 1]]
            if m.size and m.mean() >= 0.5:
                out[r, c] = float(diff[ys[r] : ys[r + 1], xs[c] : xs[c + 1]][m].mean())
    return out


def _local_station(v: FrameVerdict, diffs: np.ndarray, config: GateConfig) -> None:
    """Reject a frame where some tiles differ from the anchor: something is in view over part of it."""
    if np.all(np.isnan(diffs)):
        return
    v.tile_diff = float(np.nanmax(diffs))
    bad = np.argwhere(diffs > config.station_tile_diff)
    if len(bad):
        r, c = np.unravel_index(int(np.nanargmax(diffs)), diffs.shape)
        v.reasons["station"] = (
            f"something in view: {len(bad)} of {diffs.size} tiles differ from the other frames (largest: "
            f"{v.tile_diff:.0f} gray levels at row {r + 1}, column {c + 1}; maximum {config.station_tile_diff:.0f}); "
            "remove hands, tools and loose objects from the view (or check the light did not change locally)"
        )


def evaluate_gates(
    images: Sequence[np.ndarray], names: Sequence[str] | None = None, config: GateConfig | None = None
) -> GateReport:
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
    # clipping relative to the set: a dark part clips in every frame, a lamp off or glare stands out
    median_dark = float(np.median([v.dark_fraction for v in verdicts]))
    median_bright = float(np.median([v.bright_fraction for v in verdicts]))
    max_dark = max(config.max_dark_fraction, config.clip_ratio * median_dark)
    max_bright = max(config.max_bright_fraction, config.clip_ratio * median_bright)
    for v, thumb in zip(verdicts, thumbs, strict=True):
        v.focus_ratio = v.focus / median_focus if median_focus > 0 else 0.0
        if v.focus_ratio < config.focus_min_ratio:
            v.reasons["focus"] = (
                f"blurred or no texture: sharpness {v.focus_ratio:.2f} x the set's median (minimum {config.focus_min_ratio:.2f}); "
                "refocus, stop motion, clean the lens or check the part is present"
            )
        if v.dark_fraction > max_dark:
            v.reasons["exposure"] = (
                f"under-exposed: {v.dark_fraction:.1%} of pixels <= {config.dark_level} "
                f"(maximum {max_dark:.1%}: {config.clip_ratio:g} x the set's median {median_dark:.1%}, at least "
                f"max_dark_fraction {config.max_dark_fraction:.1%}); raise exposure or light"
            )
        elif v.bright_fraction > max_bright:
            v.reasons["exposure"] = (
                f"over-exposed: {v.bright_fraction:.1%} of pixels >= {config.bright_level} "
                f"(maximum {max_bright:.1%}: {config.clip_ratio:g} x the set's median {median_bright:.1%}, at least "
                f"max_bright_fraction {config.max_bright_fraction:.1%}); lower exposure or remove glare"
            )
        v.station_corr = normalized_correlation(thumb, median_img)

    candidates = [i for i, v in enumerate(verdicts) if not v.reasons] or list(range(len(verdicts)))
    anchor = max(candidates, key=lambda i: verdicts[i].station_corr)
    h, w = thumbs[anchor].shape
    # the inspector's own motion model (homography, feature fallback): what it registers at run
    # time is what the gate must accept; then the same photometric fit as build and the engine, so
    # a lighting change (gain, offset, gradient) is not mistaken for something in view
    aligner = Aligner(
        cv2.cvtColor(thumbs[anchor], cv2.COLOR_GRAY2RGB),
        AlignConfig(min_score=config.min_align_score, fill="black"),
    )
    photometric = Photometric(thumbs[anchor], mode="local")
    full_h, full_w = images[0].shape[:2]
    diagonal = float(np.hypot(full_w, full_h))
    for i, (v, thumb) in enumerate(zip(verdicts, thumbs, strict=True)):
        if i > 0:  # a video repeats a still part in consecutive frames: compare with the last few
            diffs_prev = {
                j: float(np.abs(thumb.astype(np.float32) - thumbs[j].astype(np.float32)).mean())
                for j in range(max(0, i - 3), i)
            }
            twin = min(diffs_prev, key=diffs_prev.__getitem__)
            v.duplicate_diff = diffs_prev[twin]
            if v.duplicate_diff < config.duplicate_max_diff:
                v.warnings["duplicate"] = (
                    f"near-duplicate of {verdicts[twin].name} (mean difference {v.duplicate_diff:.2f} gray levels, "
                    f"below {config.duplicate_max_diff:.2f}): the same part twice adds no variation; use --stride "
                    "or move the part between frames"
                )
        if i == anchor:
            v.shift_px, v.shift_fraction, v.align_score = 0.0, 0.0, 1.0
            continue
        result = aligner.align(cv2.cvtColor(thumb, cv2.COLOR_GRAY2RGB))
        v.align_score = float(result.score)
        if result.ok:
            aligned = cv2.cvtColor(result.aligned, cv2.COLOR_RGB2GRAY)
            valid = cv2.warpPerspective(np.ones_like(thumb), result.warp.matrix, (w, h), flags=cv2.INTER_NEAREST) > 0
            valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # the interpolated seam
            aligned = photometric.normalize(aligned, valid)
            corr = normalized_correlation(aligned, thumbs[anchor], valid)
            # the raw correlation judges an empty station; the aligned one forgives a small shift
            v.station_corr = max(v.station_corr, corr)
            v.shift_px = result.warp.max_corner_shift((w, h)) / scale
            v.shift_fraction = v.shift_px / diagonal
            diffs = tile_differences(aligned, thumbs[anchor], valid, config.tiles)
        else:
            diffs = tile_differences(thumb, thumbs[anchor], None, config.tiles)
        if v.station_corr < config.station_min_corr:
            v.reasons["station"] = (
                f"station changed or empty: correlation {v.station_corr:.2f} to the other frames "
                f"(minimum {config.station_min_corr:.2f}); check the part is present and the scene unchanged"
            )
            continue
        if "exposure" not in v.reasons and "focus" not in v.reasons:
            # a global lighting change or blur differs everywhere: the exposure / focus gate names it
            _local_station(v, diffs, config)
        if "station" in v.reasons:
            continue
        if not result.ok:
            v.reasons["stability"] = (
                f"does not align with the anchor frame (score {v.align_score:.2f}, minimum {config.min_align_score:.2f}: "
                f"{result.reason}); keep camera and part still"
            )
            continue
        assert v.shift_px is not None and v.shift_fraction is not None
        moved = f"moved {v.shift_px:.1f} px ({v.shift_fraction:.1%} of the image diagonal) relative to the anchor frame"
        if v.shift_fraction > config.max_shift_fraction:
            v.reasons["stability"] = (
                f"{moved}, beyond the inspector's alignment capture range ({config.max_shift_fraction:.1%}); "
                "seat the part in its fixture and keep the camera still"
            )
        elif config.max_shift_px is not None and v.shift_px > config.max_shift_px:
            v.reasons["stability"] = (
                f"{moved}, more than max_shift_px {config.max_shift_px:.1f}; seat the part in its fixture and keep the camera still"
            )
        elif v.shift_fraction > config.warn_shift_fraction:
            v.warnings["stability"] = (
                f"{moved}: kept, the aligner registers it (capture range {config.max_shift_fraction:.1%}); "
                "seat parts more consistently if this happens often"
            )
    return GateReport(verdicts=verdicts, anchor=anchor, median_focus=median_focus)


def short_reason(verdict: dict[str, Any] | FrameVerdict) -> str:
    """The first words of a frame's first rejection ("blurred or no texture"), for progress lines."""
    reasons = verdict.reasons if isinstance(verdict, FrameVerdict) else dict(verdict.get("reasons") or {})
    if not reasons:
        return ""
    gate = next((g for g in GATES if g in reasons), next(iter(reasons)))
    return reasons[gate].split(":")[0]


class LiveGates:
    """Gate results while frames arrive (live view, capture progress): the newest frame is judged
    with ``evaluate_gates`` against the last ``window`` frames, the same code as the final verdict,
    which judges the whole set once capture ends."""

    def __init__(self, config: GateConfig | None = None, window: int = 12) -> None:
        self.config = config or GateConfig()
        self.window = max(2, window)
        self._images: list[np.ndarray] = []
        self._names: list[str] = []

    def add(self, name: str, image: np.ndarray) -> FrameVerdict:
        if self._images and self._images[-1].shape != image.shape:
            self._images, self._names = [], []  # camera setting changed: start over
        self._images = [*self._images, image][-self.window :]
        self._names = [*self._names, name][-self.window :]
        return evaluate_gates(self._images, self._names, self.config).verdicts[-1]
