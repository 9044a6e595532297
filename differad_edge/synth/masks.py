"""The foreground of a product image (M_f) and the one connected component a defect keeps (M)."""

from __future__ import annotations

import cv2
import numpy as np


def foreground_mask(img: np.ndarray, min_contrast: float = 14.0, min_fraction: float = 0.02) -> np.ndarray:
    """Bool mask of the object in front of a background, estimated from the border colour.

    Pixels far (Lab distance above ``min_contrast`` and twice the border's own spread) from the
    median border colour are foreground. An image without a distinct background (a texture, a close-up) is all
    foreground — then defects may go anywhere, as for texture categories.
    """
    img = np.asarray(img)
    h, w = img.shape[:2]
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    b = max(2, min(h, w) // 50)
    border = np.concatenate(
        [lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3), lab[:, :b].reshape(-1, 3), lab[:, -b:].reshape(-1, 3)]
    )
    bg = np.median(border, axis=0)
    dist = np.linalg.norm(lab - bg, axis=2)
    # Background = close to the border colour. The bar rises with the border's own variation, so
    # a texture or a busy scene (no plain background) ends up all foreground below. (Otsu would
    # split a multi-coloured part, e.g. copper traces vs. the board, instead of part vs. background.)
    border_spread = float(np.percentile(np.linalg.norm(border - bg, axis=1), 90))
    fg = (dist > max(min_contrast, 2.0 * border_spread)).astype(np.uint8)
    k = max(3, (min(h, w) // 64) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    fg = cv2.morphologyEx(cv2.morphologyEx(fg, cv2.MORPH_CLOSE, kernel), cv2.MORPH_OPEN, kernel)
    frac = fg.mean()
    if frac < min_fraction or frac > 1.0 - min_fraction:
        return np.ones((h, w), bool)
    return fg.astype(bool)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a mask (empty stays empty)."""
    m = np.asarray(mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros(m.shape, bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best
