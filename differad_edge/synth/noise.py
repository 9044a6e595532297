"""Perlin noise and the thresholded Perlin masks that shape a synthetic defect (Algorithm 1's M_p)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import ConfigError


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D gradient (Perlin) noise of ``shape=(h, w)`` with ``res=(ry, rx)`` periods, values ~[-1, 1]."""
    h, w = shape
    ry, rx = max(1, int(res[0])), max(1, int(res[1]))
    angles = rng.uniform(0.0, 2.0 * np.pi, (ry + 1, rx + 1))
    gx, gy = np.cos(angles), np.sin(angles)
    ys = np.arange(h) * (ry / h)
    xs = np.arange(w) * (rx / w)
    y0, x0 = ys.astype(int)[:, None], xs.astype(int)[None, :]
    fy, fx = (ys - ys.astype(int))[:, None], (xs - xs.astype(int))[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        return gx[y0 + dy, x0 + dx] * (fx - dx) + gy[y0 + dy, x0 + dx] * (fy - dy)

    u, v = _fade(fx), _fade(fy)
    top = corner(0, 0) * (1 - u) + corner(0, 1) * u
    bottom = corner(1, 0) * (1 - u) + corner(1, 1) * u
    return (math.sqrt(2.0) * (top * (1 - v) + bottom * v)).astype(np.float32)


def fractal_noise(
    shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator, octaves: int = 3
) -> np.ndarray:
    """Sum of Perlin octaves (each twice the frequency, half the amplitude), normalised to ~[-1, 1]."""
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        out += amp * perlin_noise(shape, (res[0] * 2**k, res[1] * 2**k), rng)
        total += amp
        amp *= 0.5
    return out / total


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    min_scale: int = 0,
    max_scale: int = 6,
    threshold: float = 0.5,
    rotate: bool = True,
) -> np.ndarray:
    """Thresholded Perlin noise (DRAEM-style): bool ``(h, w)`` mask of irregular blobs.

    The period count per axis is ``2**k`` with ``k`` drawn from ``[min_scale, max_scale)``; the noise
    field is rotated by a random angle so blobs are not axis-aligned.
    """
    if not 0 <= min_scale < max_scale:
        raise ConfigError(f"perlin scales must satisfy 0 <= min_scale < max_scale, got {min_scale}, {max_scale}")
    h, w = shape
    ry, rx = (2 ** int(rng.integers(min_scale, max_scale)) for _ in range(2))
    noise = perlin_noise((h, w), (ry, rx), rng)
    if rotate:
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(rng.uniform(-90, 90)), 1.0)
        noise = cv2.warpAffine(noise, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return noise > threshold
