"""The one box type and its geometry (IoU, area, center, diagonal), shared by inference,
training rewards, metrics and export verification."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import BoxError


@dataclass(frozen=True, slots=True)
class Box:
    """Axis-aligned box ``(x1, y1, x2, y2)``; the zero box ``(0, 0, 0, 0)`` means "no anomaly".

    Units are whatever the caller says (pixels or the 0-1000 model scale); the type does not
    convert implicitly so a pixel box can never be mistaken for a model-scale one silently.
    """

    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
        for name in ("x1", "y1", "x2", "y2"):
            try:
                v = float(getattr(self, name))
            except (TypeError, ValueError):
                raise BoxError(f"box coordinates must be numbers, got {self.as_tuple()!r}") from None
            if not math.isfinite(v):
                raise BoxError(f"box coordinates must be finite, got {self.as_tuple()!r}")
            object.__setattr__(self, name, v)

    @classmethod
    def from_seq(cls, values: Sequence[float] | Iterable[float]) -> Box:
        try:
            vals = [float(v) for v in values]
        except (TypeError, ValueError) as e:
            raise BoxError(f"a box needs 4 numbers [x1, y1, x2, y2], got {values!r}") from e
        if len(vals) != 4:
            raise BoxError(f"a box needs 4 numbers [x1, y1, x2, y2], got {len(vals)}: {vals!r}")
        return cls(*vals)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def as_int_list(self) -> list[int]:
        """Integer corners (rounded), the JSON form of pixel boxes."""
        return [int(round(v)) for v in self.as_tuple()]

    @property
    def is_zero(self) -> bool:
        return self.x1 == 0 and self.y1 == 0 and self.x2 == 0 and self.y2 == 0

    @property
    def width(self) -> float:
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        return max(0.0, self.y2 - self.y1)

    @property
    def area(self) -> float:
        """A(B) = max(0, x2 - x1) * max(0, y2 - y1) (paper, Eq. 3)."""
        return self.width * self.height

    @property
    def is_degenerate(self) -> bool:
        """No area: a line, a point, or inverted corners (the zero box is degenerate too)."""
        return self.x2 <= self.x1 or self.y2 <= self.y1

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)

    @property
    def diagonal(self) -> float:
        return math.hypot(self.width, self.height)

    def clip(self, width: float, height: float) -> Box:
        """Clip into ``[0, width] x [0, height]`` (corners may become degenerate)."""
        return Box(
            min(max(self.x1, 0.0), width),
            min(max(self.y1, 0.0), height),
            min(max(self.x2, 0.0), width),
            min(max(self.y2, 0.0), height),
        )

    def normalized(self) -> Box:
        """Corners sorted so that x1 <= x2 and y1 <= y2."""
        return Box(min(self.x1, self.x2), min(self.y1, self.y2), max(self.x1, self.x2), max(self.y1, self.y2))


ZERO_BOX = Box(0.0, 0.0, 0.0, 0.0)


def intersection_area(a: Box, b: Box) -> float:
    w = min(a.x2, b.x2) - max(a.x1, b.x1)
    h = min(a.y2, b.y2) - max(a.y1, b.y1)
    return max(0.0, w) * max(0.0, h)


def iou(a: Box, b: Box) -> float:
    """Intersection over union (paper Eq. 3); 0 when the union is empty.

    >>> iou(Box(0, 0, 10, 10), Box(5, 0, 15, 10))
    0.3333333333333333
    """
    inter = intersection_area(a, b)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def center_distance(a: Box, b: Box) -> float:
    (ax, ay), (bx, by) = a.center, b.center
    return math.hypot(ax - bx, ay - by)


def box_from_mask(mask) -> Box:  # mask: a numpy array (numpy imported lazily here)
    """Tight pixel box of the non-zero pixels (exclusive right/bottom edge); zero box when empty."""
    import numpy as np

    ys, xs = np.nonzero(np.asarray(mask))
    if xs.size == 0:
        return ZERO_BOX
    return Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
