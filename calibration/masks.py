"""Care masks: which reference pixels are inspected (255) and which are ignored (0).

A mask comes from a PNG drawn by the engineer (non-zero = inspect) or from polygons in YAML::

    care:            # optional; default: the whole image
      - [[10, 10], [240, 10], [240, 240], [10, 240]]
    ignore:          # don't-care regions cut out of the care region
      - [[100, 100], [140, 100], [140, 130]]

and may lose pixels that varied too much between good parts (``unstable_mask``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from differad_edge.errors import CalibrationError, ImageError
from differad_edge.images import load_image


def load_care_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Read a PNG or YAML care mask for an image of ``size`` = (width, height); uint8 0/255."""
    p = Path(path)
    if p.suffix.lower() in (".yaml", ".yml"):
        return polygons_mask(p, size)
    try:
        rgb = load_image(p)
    except ImageError as e:
        raise CalibrationError(
            f"cannot read care mask {p}: {e}; pass a PNG (white = inspect) or a YAML of polygons"
        ) from e
    if (rgb.shape[1], rgb.shape[0]) != tuple(size):
        raise CalibrationError(
            f"care mask {p} is {rgb.shape[1]}x{rgb.shape[0]} but the frames are {size[0]}x{size[1]}; "
            "draw the mask on a captured frame"
        )
    mask = np.where(rgb.max(axis=2) > 127, 255, 0).astype(np.uint8)
    if not mask.any():
        raise CalibrationError(
            f"care mask {p} is all black: nothing would be inspected; white marks the inspected area"
        )
    return mask


def polygons_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise CalibrationError(f"cannot read polygon mask {path}: {' '.join(str(e).split())[:200]}") from e
    except RecursionError as e:
        raise CalibrationError(f"cannot read polygon mask {path}: nested too deeply") from e
    if not isinstance(data, dict) or not set(data) <= {"care", "ignore"}:
        raise CalibrationError(f"polygon mask {path} must be a mapping with 'care' and/or 'ignore' lists of polygons")
    w, h = size
    care = data.get("care")
    mask = np.zeros((h, w), np.uint8) if care else np.full((h, w), 255, np.uint8)
    for key, value in (("care", 255), ("ignore", 0)):
        polys = data.get(key) or []
        if not isinstance(polys, list):
            raise CalibrationError(
                f"polygon mask {path}: '{key}' must be a list of polygons, got {type(polys).__name__}"
            )
        for j, poly in enumerate(polys):
            pts = _polygon(poly, f"{path}: {key}[{j}]")
            cv2.fillPoly(mask, [pts], value)
    if not mask.any():
        raise CalibrationError(f"polygon mask {path} leaves nothing to inspect; shrink the 'ignore' polygons")
    return mask


def _polygon(poly: object, where: str) -> np.ndarray:
    try:
        shown = repr(poly)
    except (RecursionError, ValueError):
        shown = "<unprintable>"
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    try:
        pts = np.asarray(poly, dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise CalibrationError(f"{where} is not a list of [x, y] points: {shown}") from e
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3 or not np.all(np.isfinite(pts)):
        raise CalibrationError(f"{where} needs at least 3 [x, y] points, got {shown}")
    if np.abs(pts).max() > 1e6:
        raise CalibrationError(f"{where} has points beyond +-1e6 pixels: {shown}")
    return np.round(pts).astype(np.int32)


def unstable_mask(spread: np.ndarray, max_spread: float, dilate_px: int = 0) -> np.ndarray:
    """uint8 0/255 mask of pixels whose spread (largest over channels) exceeds ``max_spread``."""
    s = spread.max(axis=2) if spread.ndim == 3 else spread
    mask = (s > max_spread).astype(np.uint8) * 255
    if dilate_px > 0 and mask.any():
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        mask = cv2.dilate(mask, kernel)
    return mask
