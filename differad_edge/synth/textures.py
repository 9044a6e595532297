"""Procedural anomaly textures (I_tex) and the augmentation every texture gets before it is pasted."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from ..errors import ConfigError
from ..images import to_rgb8
from ._common import Size, _size
from .noise import fractal_noise

TEXTURE_FAMILIES = ("noise", "stripes", "cracks", "speckle", "blobs")


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = rng.uniform(0, 255, 3)
    b = rng.uniform(0, 255, 3)
    if np.abs(a - b).max() < 90:  # keep the pattern visible
        b = 255.0 - a
    return a.astype(np.float32), b.astype(np.float32)


def _mix(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return t[..., None] * a + (1.0 - t[..., None]) * b


def _tex_noise(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    r = int(rng.integers(2, 9))
    n = fractal_noise((h, w), (r, r), rng, octaves=4)
    t = (n - n.min()) / max(float(np.ptp(n)), 1e-6)  # stretch: raw fractal noise stays near its mean
    return _mix(t, *_two_colours(rng))


def _tex_stripes(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(4, max(6.0, min(w, h) / 6))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 6.3))
    if rng.random() < 0.5:
        t = (t > 0.5).astype(np.float32)
    return _mix(t, *_two_colours(rng)) + rng.normal(0, 6, (h, w, 1))


def _tex_cracks(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    base, line = _two_colours(rng)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    img += rng.normal(0, 8, (h, w, 1))
    for _ in range(int(rng.integers(3, 9))):
        p = rng.uniform([0, 0], [w, h])
        ang = rng.uniform(0, 2 * np.pi)
        pts = [p.copy()]
        for _ in range(int(rng.integers(8, 30))):
            ang += rng.normal(0, 0.5)
            p = p + rng.uniform(2, max(3.0, min(w, h) / 15)) * np.array([np.cos(ang), np.sin(ang)])
            pts.append(p.copy())
        cv2.polylines(
            img, [np.round(np.array(pts)).astype(np.int32)], False, line.tolist(), int(rng.integers(1, 4)), cv2.LINE_AA
        )
    return img


def _tex_speckle(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(0, 255, 3).astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    n = int(rng.integers(w * h // 400, w * h // 60 + 2))
    xs, ys = rng.integers(0, w, n), rng.integers(0, h, n)
    rs = rng.integers(1, max(2, min(w, h) // 40) + 1, n)
    cols = rng.uniform(0, 255, (n, 3))
    for x, y, r, c in zip(xs, ys, rs, cols, strict=True):
        cv2.circle(img, (int(x), int(y)), int(r), c.tolist(), -1, cv2.LINE_AA)
    return img + rng.normal(0, 10, (h, w, 3))


def _tex_blobs(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    g = int(rng.integers(3, 8))
    small = rng.uniform(0, 255, (g, g, 3)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


_TEXTURES: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "noise": _tex_noise,
    "stripes": _tex_stripes,
    "cracks": _tex_cracks,
    "speckle": _tex_speckle,
    "blobs": _tex_blobs,
}


def procedural_texture(size: int | Size, rng: np.random.Generator, family: str | None = None) -> np.ndarray:
    """A uint8 RGB texture of ``size`` (int or ``(w, h)``) from one of ``TEXTURE_FAMILIES``."""
    w, h = _size(size)
    if family is None:
        family = TEXTURE_FAMILIES[int(rng.integers(len(TEXTURE_FAMILIES)))]
    if family not in _TEXTURES:
        raise ConfigError(f"unknown texture family {family!r}; known: {', '.join(TEXTURE_FAMILIES)}")
    return np.clip(_TEXTURES[family](w, h, rng), 0, 255).astype(np.uint8)


def augment_texture(tex: np.ndarray, size: Size, rng: np.random.Generator) -> np.ndarray:
    """Random flip/rotation, gamma, per-channel gain, sometimes inversion or hue rotation; resized to ``size``."""
    w, h = size
    t = to_rgb8(np.asarray(tex), "rgb")  # gray, 16-bit or RGBA textures are accepted too
    if rng.random() < 0.5:
        t = t[:, ::-1]
    if rng.random() < 0.5:
        t = t[::-1]
    t = np.rot90(t, int(rng.integers(4)))
    t = cv2.resize(np.ascontiguousarray(t), (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    t = t ** rng.uniform(0.6, 1.6)
    t = t * rng.uniform(0.7, 1.3, 3)[None, None, :]
    if rng.random() < 0.2:
        t = 1.0 - t
    if rng.random() < 0.3:
        t = t[..., rng.permutation(3)]
    return np.clip(t * 255.0, 0, 255).astype(np.float32)
