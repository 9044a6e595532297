"""Golden-template engine: the embedded default (no weights, no torch).

A pixel is defective when the aligned target leaves its per-pixel tolerance band around the
reference's center image:

    tolerance = max(abs_threshold, k * spread, shift_px * |grad center|)

``spread`` comes from a variation model of several good parts (``variation.build_variation_model``);
the gradient term tolerates the residual sub-pixel misalignment that makes edges flicker even when
only one good image exists (HALCON's "direct" variation model does the same). Bright and dark
deviations get separate thresholds; a care mask and an image border switch pixels off. Everything
per-reference is folded into two uint8 bound images in ``prepare``, so ``detect`` is one
``inRange``, a little morphology and one connected-components pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np

from ..boxes import Box
from ..errors import ConfigError, ImageError
from ..images import load_image, to_rgb8
from ..variation import VariationMethod, build_variation_model
from .base import Defect, Detection, Engine, EngineHandle, Reference, StageTimer

#: Key of ``Reference.metadata`` holding golden thresholds tuned by calibration.
TUNED_KEY = "golden"
_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(eq=False)  # may hold a mask array: compare configs via to_dict()
class GoldenConfig:
    """Thresholds of the golden-template engine (gray levels 0-255 unless said otherwise).

    abs_threshold: smallest tolerated deviation anywhere (noise floor).
    k: tolerance in units of the variation model's per-pixel spread (sigma).
    bright_threshold / dark_threshold: replace ``abs_threshold`` for brighter / darker deviations.
    shift_px: tolerated residual misalignment in pixels (tolerance += gradient * shift_px).
    border: pixels along the image edge that are never inspected.
    care_mask: extra don't-care mask (array HxW or image path; non-zero = inspect), combined
        with the reference's own care mask.
    blur: Gaussian sigma applied to target and center before comparing (0 = off).
    open_size / close_size: morphology kernel sizes (0 = off): opening drops specks, closing
        joins the fragments of one defect.
    min_area: smallest defect in pixels (after morphology).
    max_defects: most defects reported per frame (highest scores first).
    anomaly_map: also return the per-pixel deviation / tolerance map (costs a full-frame pass).
    channels: compare each RGB channel (``rgb``: colour-only defects too) or luminance (``gray``, ~2x faster).
    brightness: ``offset`` removes a global brightness change before comparing; ``none`` keeps it.
    method: variation method used by ``GoldenEngine.build_reference`` for several good images.
    """

    abs_threshold: float = 20.0
    k: float = 4.0
    bright_threshold: float | None = None
    dark_threshold: float | None = None
    shift_px: float = 1.0
    border: int = 4
    care_mask: np.ndarray | str | os.PathLike | None = field(default=None, repr=False)
    blur: float = 1.0
    open_size: int = 3
    close_size: int = 5
    min_area: int = 25
    max_defects: int = 8
    anomaly_map: bool = False
    channels: Literal["gray", "rgb"] = "rgb"
    brightness: Literal["offset", "none"] = "offset"
    method: VariationMethod = "median_mad"

    def __post_init__(self) -> None:
        for name in ("abs_threshold", "k", "shift_px", "blur"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ConfigError(f"golden {name}={value!r} must be a finite number >= 0")
        for name in ("bright_threshold", "dark_threshold"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, (int, float)) or not np.isfinite(value) or not 0 <= value <= 255
            ):
                raise ConfigError(f"golden {name}={value!r} must be None or a gray level in [0, 255]")
        for name in ("border", "open_size", "close_size", "min_area"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f"golden {name}={value!r} must be an integer >= 0 (pixels)")
        if self.min_area < 1:
            self.min_area = 1
        if isinstance(self.max_defects, bool) or not isinstance(self.max_defects, (int, np.integer)) or self.max_defects < 1:
            raise ConfigError(f"golden max_defects={self.max_defects!r} must be an integer >= 1")
        if not isinstance(self.anomaly_map, (bool, np.bool_)):
            raise ConfigError(f"golden anomaly_map={self.anomaly_map!r} must be true or false")
        if self.channels not in ("gray", "rgb"):
            raise ConfigError(f"golden channels={self.channels!r} must be 'gray' or 'rgb'")
        if self.brightness not in ("offset", "none"):
            raise ConfigError(f"golden brightness={self.brightness!r} must be 'offset' or 'none'")
        if self.method not in ("median_mad", "mean_std"):
            raise ConfigError(f"golden method={self.method!r} must be 'median_mad' or 'mean_std'")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        cm = d.pop("care_mask")
        d["care_mask"] = None if cm is None else (str(cm) if not isinstance(cm, np.ndarray) else "array")
        return d


class GoldenEngine(Engine):
    """Per-pixel tolerance band around a golden reference; every defect blob -> a ranked defect."""

    name = "golden"

    def __init__(self, config: GoldenConfig | None = None, **overrides: Any) -> None:
        base = config or GoldenConfig()
        if overrides:
            unknown = sorted(set(overrides) - set(GoldenConfig.__dataclass_fields__))
            if unknown:
                raise ConfigError(
                    f"unknown golden option(s) {unknown}; known: {sorted(GoldenConfig.__dataclass_fields__)}"
                )
            base = replace(base, **overrides)
        self.config = base
        # Options the user set explicitly win over thresholds a validated reference carries.
        self._explicit = set(GoldenConfig.__dataclass_fields__) if config is not None else set(overrides)

    def config_for(self, reference: Reference) -> GoldenConfig:
        """The engine config, with thresholds tuned by calibration (``differad-calibrate validate``,
        carried in ``reference.metadata["golden"]``) applied where the user set none explicitly."""
        tuned = reference.metadata.get(TUNED_KEY) or {}
        known = set(GoldenConfig.__dataclass_fields__) - {"care_mask"}
        updates = {k: v for k, v in tuned.items() if k in known and k not in self._explicit}
        return replace(self.config, **updates) if updates else self.config

    # -- reference -------------------------------------------------------------------------
    def build_reference(self, good_images: Sequence[np.ndarray], **fields: Any) -> Reference:
        """A ``Reference`` with a variation model from several aligned good images (first = image)."""
        imgs = [to_rgb8(g) for g in good_images]
        if not imgs:
            raise ImageError("build_reference needs at least one good image")
        mean, spread = build_variation_model(imgs, self.config.method)
        return Reference(image=imgs[0], mean=mean, spread=spread, **fields)

    def prepare(self, reference: Reference) -> EngineHandle:
        cfg = self.config_for(reference)
        img = to_rgb8(reference.image)
        h, w = img.shape[:2]
        center = (reference.mean if reference.mean is not None else img).astype(np.float32)
        spread = None if reference.spread is None else np.asarray(reference.spread, dtype=np.float32)
        for name, arr in (("mean", center), ("spread", spread)):
            if arr is not None and arr.shape[:2] != (h, w):
                raise ImageError(f"reference {name} has shape {arr.shape}, the image is {(h, w)}; rebuild the model")
        center = _channels(center, cfg.channels)
        spread = np.zeros_like(center) if spread is None else _channels(spread, cfg.channels)
        if cfg.blur > 0:
            center = cv2.GaussianBlur(center, (0, 0), cfg.blur)
        grad = self._gradient(center)
        var_tol = np.maximum(np.float32(cfg.k) * spread, np.float32(cfg.shift_px) * grad)
        bright = np.maximum(var_tol, np.float32(_or(cfg.bright_threshold, cfg.abs_threshold)))
        dark = np.maximum(var_tol, np.float32(_or(cfg.dark_threshold, cfg.abs_threshold)))
        hi = np.clip(np.floor(center + bright), 0, 255).astype(np.uint8)
        lo = np.clip(np.ceil(center - dark), 0, 255).astype(np.uint8)
        care = _care(reference, (h, w), cfg)
        off = care == 0
        hi[off], lo[off] = 255, 0
        eps = np.float32(1e-3)
        state = {
            "size": (w, h),
            "lo": lo,
            "hi": hi,
            "center": center,
            "inv_bright": 1.0 / np.maximum(bright, eps),
            "neg_inv_dark": -1.0 / np.maximum(dark, eps),
            "care": care,
            "care_mean": float(cv2.mean(center if center.ndim == 2 else center @ _GRAY_WEIGHTS, care)[0]),
            "open": _kernel(cfg.open_size),
            "close": _kernel(cfg.close_size),
            "config": cfg,
        }
        return EngineHandle(reference=reference, state=state)

    @staticmethod
    def _gradient(center: np.ndarray) -> np.ndarray:
        """Intensity change per pixel of shift (Sobel / 8), per channel."""
        gx = cv2.Sobel(center, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(center, cv2.CV_32F, 0, 1, ksize=3)
        return cv2.magnitude(gx, gy) / np.float32(8.0)

    # -- per frame --------------------------------------------------------------------------
    def detect(self, handle: EngineHandle, target: np.ndarray) -> Detection:
        s = handle.state
        cfg: GoldenConfig = s["config"]
        timer = StageTimer()
        with timer("diff"):
            t = self._target(target, s["size"])
            if cfg.channels == "gray":
                t = cv2.cvtColor(t, cv2.COLOR_RGB2GRAY)
            if cfg.blur > 0:
                t = cv2.GaussianBlur(t, (0, 0), cfg.blur)
            if cfg.brightness == "offset":
                gray = t if t.ndim == 2 else cv2.cvtColor(t, cv2.COLOR_RGB2GRAY)
                offset = s["care_mean"] - cv2.mean(gray, s["care"])[0]
                if abs(offset) >= 0.5:
                    o = abs(offset) if t.ndim == 2 else (abs(offset),) * 3 + (0.0,)
                    t = cv2.add(t, o) if offset > 0 else cv2.subtract(t, o)
            mask = cv2.bitwise_not(cv2.inRange(t, s["lo"], s["hi"]))
        defects: list[Defect] = []
        score, notes = 0.0, []
        if cv2.countNonZero(mask):
            with timer("morphology"):
                if s["open"] is not None:
                    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, s["open"])
                if s["close"] is not None:
                    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, s["close"])
            with timer("components"):
                blobs = _blobs(mask, cfg.min_area)
            with timer("score"):
                for box, region, area in blobs:
                    defects.append(Defect(box, _score(self._peak_ratio(t, s, box, region)), float(area), region))
                defects.sort(key=lambda d: d.score, reverse=True)
                if len(defects) > cfg.max_defects:
                    notes.append(f"{len(defects)} defects found, the {cfg.max_defects} highest-scoring reported")
                    del defects[cfg.max_defects :]
                if defects:
                    score = defects[0].score
                else:
                    score = _score(self._peak_ratio(t, s, None, None))
                    notes.append("deviations smaller than min_area after morphology")
        anomaly_map = None
        if cfg.anomaly_map:
            with timer("anomaly_map"):
                anomaly_map = self._ratio_map(t, s)
        return Detection(defects, score, self.name, timings_ms=timer.ms, anomaly_map=anomaly_map, notes=notes)

    @staticmethod
    def _target(target: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if not isinstance(target, np.ndarray) or target.dtype != np.uint8 or target.ndim != 3 or target.shape[2] != 3:
            what = getattr(target, "shape", type(target).__name__)
            raise ImageError(f"golden detect needs a uint8 RGB HxWx3 target, got {what}; use images.load_image")
        w, h = size
        if target.shape[:2] != (h, w):
            raise ImageError(
                f"target is {target.shape[1]}x{target.shape[0]} but the reference is {w}x{h}; "
                "align it first (Inspector / alignment.align) or resize it to the reference"
            )
        return target

    def _peak_ratio(self, t: np.ndarray, s: dict, box: Box | None, region: np.ndarray | None) -> float:
        """Largest |deviation| / tolerance inside the blob (or the inspected image when no blob)."""
        if box is None:
            ys, xs = slice(None), slice(None)
        else:
            x1, y1, x2, y2 = box.as_int_list()
            ys, xs = slice(y1, y2), slice(x1, x2)
        keep = region if region is not None else s["care"][ys, xs]
        keep = keep.view(np.uint8) if keep.dtype == np.bool_ else keep
        if not cv2.countNonZero(keep):
            return 0.0
        return float(cv2.minMaxLoc(_ratio(t, s, ys, xs), mask=keep)[1])

    @staticmethod
    def _ratio_map(t: np.ndarray, s: dict) -> np.ndarray:
        """Deviation / tolerance over the whole frame (float32 HxW, 0 outside the care mask)."""
        r = _ratio(t, s, slice(None), slice(None))
        r[s["care"] == 0] = 0.0
        return r

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "config": self.config.to_dict()}


def _channels(arr: np.ndarray, channels: str) -> np.ndarray:
    """Float image in the compared channel layout (gray HxW or RGB HxWx3)."""
    arr = np.asarray(arr, dtype=np.float32)
    if channels == "gray":
        return arr if arr.ndim == 2 else np.ascontiguousarray(arr @ _GRAY_WEIGHTS)
    return arr if arr.ndim == 3 else np.repeat(arr[:, :, None], 3, axis=2)


def _care(reference: Reference, shape: tuple[int, int], cfg: GoldenConfig) -> np.ndarray:
    h, w = shape
    care = np.full((h, w), 255, np.uint8)
    for source, what in ((reference.care_mask, "reference care mask"), (cfg.care_mask, "config care_mask")):
        if source is None:
            continue
        m = source if isinstance(source, np.ndarray) else load_image(source)[:, :, 0]
        m = np.asarray(m)
        if m.ndim == 3:
            m = m.max(axis=2)
        if m.shape != (h, w):
            raise ImageError(f"{what} has shape {m.shape}, the reference is {(h, w)}; give a HxW mask")
        care[m == 0] = 0
    b = min(cfg.border, h // 2, w // 2)
    if b:
        care[:b], care[-b:], care[:, :b], care[:, -b:] = 0, 0, 0, 0
    return care


def _blobs(mask: np.ndarray, min_area: int) -> list[tuple[Box, np.ndarray, int]]:
    """Every 8-connected blob of at least ``min_area`` pixels: (box, its bool region crop, area).

    Labelling runs on the bounding rectangle of the deviations only (most frames have one small
    defect; labelling the whole frame would dominate the cost).
    """
    ox, oy, cw, ch = cv2.boundingRect(mask)
    if cw == 0 or ch == 0:
        return []
    crop = mask[oy : oy + ch, ox : ox + cw]
    n, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    out = []
    for label in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[label])
        if area < min_area:
            continue
        region = labels[y : y + bh, x : x + bw] == label
        out.append((Box(float(ox + x), float(oy + y), float(ox + x + bw), float(oy + y + bh)), region, area))
    return out


def _ratio(t: np.ndarray, s: dict, ys: slice, xs: slice) -> np.ndarray:
    """|deviation| / tolerance (bright or dark side), max over channels: 1.0 = at the tolerance.

    OpenCV element-wise ops: numpy's temporaries and channel reduction cost about 25 ms on a
    full 800x800 RGB frame (a good part with tiny deviations), more than a 30 fps camera allows.
    """
    d = cv2.subtract(t[ys, xs], s["center"][ys, xs], dtype=cv2.CV_32F)
    # d * inv_bright where d > 0, -d * inv_dark where d < 0: the positive one of the two products
    r = cv2.max(cv2.multiply(d, s["inv_bright"][ys, xs]), cv2.multiply(d, s["neg_inv_dark"][ys, xs]))
    if r.ndim == 3:
        r = cv2.reduce(r.reshape(-1, r.shape[2]), 1, cv2.REDUCE_MAX).reshape(r.shape[:2])
    return r


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _kernel(size: int) -> np.ndarray | None:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)) if size > 1 else None


def _score(ratio: float) -> float:
    """Peak normalized deviation r -> r / (1 + r) in [0, 1); 0.5 is exactly at the tolerance."""
    return ratio / (1.0 + ratio)


__all__ = ["TUNED_KEY", "GoldenConfig", "GoldenEngine"]
