"""The one coordinate mapping: model scale (0-1000 per axis, Qwen2/3-VL grounding) <-> pixels, and
pixel <-> pixel through every resize, crop and alignment warp the pipeline applies (homographies)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .boxes import ZERO_BOX, Box
from .errors import BoxError

MODEL_SCALE = 1000


def to_model_scale(box: Box, width: int, height: int, scale: int = MODEL_SCALE) -> Box:
    """Pixel box in an image of ``width x height`` -> integer box on the 0-``scale`` grid.

    The zero box stays the zero box (it means "no anomaly", not "a box at the origin").

    >>> to_model_scale(Box(80, 40, 160, 120), 800, 400)
    Box(x1=100.0, y1=100.0, x2=200.0, y2=300.0)
    """
    _check_size(width, height)
    if box.is_zero:
        return ZERO_BOX
    b = box.clip(width, height)
    sx, sy = scale / width, scale / height
    x1, x2 = _round_span(b.x1 * sx, b.x2 * sx, scale)
    y1, y2 = _round_span(b.y1 * sy, b.y2 * sy, scale)
    return Box(x1, y1, x2, y2)


def _round_span(lo: float, hi: float, scale: int) -> tuple[float, float]:
    """Round both ends to the integer grid; a non-empty extent stays at least one unit wide.

    Plain rounding would collapse a sub-unit defect (or one whose ends are 1.5 and 2.5: banker's
    rounding) into a degenerate box, i.e. an invalid label/answer. The widened unit is centred on
    the extent, so each end moves by less than one unit.
    """
    a, b = round(lo), round(hi)
    if hi > lo and b <= a:
        a = min(max(math.floor((lo + hi) / 2.0), 0), scale - 1)
        b = a + 1
    return float(a), float(b)


def from_model_scale(box: Box, width: int, height: int, scale: int = MODEL_SCALE) -> Box:
    """0-``scale`` box -> pixel box of an image of ``width x height`` (clipped to the image)."""
    _check_size(width, height)
    if box.is_zero:
        return ZERO_BOX
    b = box.clip(scale, scale)
    sx, sy = width / scale, height / scale
    return Box(b.x1 * sx, b.y1 * sy, b.x2 * sx, b.y2 * sy)


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise BoxError(f"image size must be positive, got {width}x{height}")


@dataclass(frozen=True)
class PixelTransform:
    """A 3x3 homography from one pixel frame (``src``) to another (``dst``).

    Resizes, crops, affine and perspective alignment warps are all homographies, so one type
    composes every step and maps boxes back through the whole chain exactly.
    """

    matrix: np.ndarray

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=np.float64)
        if m.shape == (2, 3):
            m = np.vstack([m, [0.0, 0.0, 1.0]])
        if m.shape != (3, 3) or not np.all(np.isfinite(m)):
            raise BoxError(f"a pixel transform needs a finite 3x3 (or 2x3) matrix, got shape {m.shape}")
        object.__setattr__(self, "matrix", m)

    @classmethod
    def identity(cls) -> PixelTransform:
        return cls(np.eye(3))

    @classmethod
    def scale(cls, sx: float, sy: float) -> PixelTransform:
        return cls(np.diag([sx, sy, 1.0]))

    @classmethod
    def resize(cls, src_size: tuple[int, int], dst_size: tuple[int, int]) -> PixelTransform:
        """Resize of a whole image from ``(w, h)`` to ``(w', h')`` (pixel-edge convention)."""
        (w, h), (w2, h2) = src_size, dst_size
        _check_size(w, h)
        _check_size(w2, h2)
        return cls.scale(w2 / w, h2 / h)

    @classmethod
    def translate(cls, dx: float, dy: float) -> PixelTransform:
        m = np.eye(3)
        m[0, 2], m[1, 2] = dx, dy
        return cls(m)

    @classmethod
    def crop(cls, x0: float, y0: float) -> PixelTransform:
        """Source frame -> frame of a crop whose top-left corner is ``(x0, y0)``."""
        return cls.translate(-x0, -y0)

    def then(self, other: PixelTransform) -> PixelTransform:
        """Apply ``self`` first, then ``other``."""
        return PixelTransform(other.matrix @ self.matrix)

    def inverse(self) -> PixelTransform:
        try:
            return PixelTransform(np.linalg.inv(self.matrix))
        except np.linalg.LinAlgError as e:
            raise BoxError("transform is singular and cannot be inverted") from e

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        homo = np.hstack([pts, np.ones((len(pts), 1))]) @ self.matrix.T
        w = homo[:, 2:3]
        if np.any(np.abs(w) < 1e-12):
            raise BoxError("point maps to infinity under this transform")
        return homo[:, :2] / w

    def apply_box(self, box: Box, clip_to: tuple[int, int] | None = None) -> Box:
        """Map a box by its four corners and take their bounding box; the zero box stays zero.

        ``clip_to=(w, h)`` clips into the destination image.
        """
        if box.is_zero:
            return ZERO_BOX
        corners = np.array([[box.x1, box.y1], [box.x2, box.y1], [box.x2, box.y2], [box.x1, box.y2]])
        p = self.apply_points(corners)
        out = Box(float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max()))
        return out.clip(*clip_to) if clip_to is not None else out

    def max_corner_shift(self, size: tuple[int, int]) -> float:
        """Largest distance (px) a corner or the centre of a ``(w, h)`` image moves under the transform.

        How far a warp really moves the picture: the aligner's identity fast path and calibration's
        stability gate both read it (``inf`` where a point maps to infinity).

        >>> PixelTransform.translate(3.0, 4.0).max_corner_shift((10, 10))
        5.0
        """
        w, h = size
        pts = np.array([[0, 0], [w, 0], [w, h], [0, h], [w / 2, h / 2]], dtype=np.float64)
        homo = np.hstack([pts, np.ones((len(pts), 1))]) @ self.matrix.T
        if np.any(np.abs(homo[:, 2]) < 1e-12):
            return math.inf
        return float(np.max(np.linalg.norm(homo[:, :2] / homo[:, 2:3] - pts, axis=1)))

    @property
    def is_identity(self) -> bool:
        return bool(np.allclose(self.matrix, np.eye(3)))
