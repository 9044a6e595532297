"""Test parts of the core-vision tests: a textured "product" image and helpers that warp it and draw
defects with OpenCV (the tests do not depend on the synthetic-data module)."""

from __future__ import annotations

import cv2
import numpy as np

from differad_edge.boxes import Box


def make_product(size: int = 256, seed: int = 0) -> np.ndarray:
    """A structured RGB part: smooth shading plus a few sharp discs and bars (alignment needs texture)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 1.0, (size // 16, size // 16)).astype(np.float32)
    img = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
    img = (img - img.min()) / (img.max() - img.min()) * 100.0 + 70.0
    for _ in range(8):
        c = tuple(int(v) for v in rng.integers(size // 8, size - size // 8, 2))
        cv2.circle(img, c, int(rng.integers(size // 30, size // 10)), float(rng.integers(40, 220)), -1)
    for _ in range(4):
        p = rng.integers(0, size, 4)
        cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), float(rng.integers(40, 220)), 3)
    gray = cv2.GaussianBlur(img, (0, 0), 1.2)
    rgb = np.dstack([gray, gray * 0.8 + 30.0, gray * 0.6 + 50.0])
    return np.clip(rgb, 0, 255).astype(np.uint8)


def rigid(size: int, angle: float = 0.0, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """2x3 OpenCV matrix (pixel centers) rotating about the image center and shifting."""
    m = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), angle, 1.0)
    m[:, 2] += (dx, dy)
    return m


def warp(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Move the part by ``m`` (reference px -> frame px), filling with reflected content."""
    h, w = img.shape[:2]
    if m.shape == (3, 3):
        return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def draw_blob(img: np.ndarray, center: tuple[int, int], radius: int, color: tuple[int, int, int]) -> Box:
    """A filled disc defect; returns its ground-truth pixel box (exclusive right/bottom)."""
    out_mask = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(out_mask, center, radius, 255, -1)
    img[out_mask > 0] = color
    ys, xs = np.nonzero(out_mask)
    return Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def draw_scratch(img: np.ndarray, p1: tuple[int, int], p2: tuple[int, int], color: tuple[int, int, int]) -> Box:
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.line(mask, p1, p2, 255, 4)
    img[mask > 0] = color
    ys, xs = np.nonzero(mask)
    return Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def good_copy(img: np.ndarray, rng: np.random.Generator, noise: float = 3.0, brightness: float = 0.0) -> np.ndarray:
    """Another good part: sensor noise and a global brightness change."""
    out = img.astype(np.float32) + rng.normal(0.0, noise, img.shape) + brightness
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
