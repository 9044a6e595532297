"""Image sizes of the generators: an int (square) or ``(width, height)``."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

Size = tuple[int, int]  # (width, height)


def _size(size: int | Size) -> Size:
    w, h = (size, size) if isinstance(size, (int, np.integer)) else size
    if int(w) < 8 or int(h) < 8:
        raise ConfigError(f"image size {w}x{h} is too small; expected at least 8x8 pixels")
    return int(w), int(h)
