"""Synthetic anomaly pairs (paper III-C, Algorithm 1), deterministic by seed and self-contained:
Perlin noise, textures and defect-free "normal" products are all procedural (numpy + OpenCV), so
training data, demos and tests need no downloads. Folders of real normals/textures can be used too.

Algorithm 1, per defect-free reference I_ref:
  with p = 0.25 the target is I_ref (empty mask, zero box); otherwise a thresholded Perlin mask
  M_p is intersected with the foreground M_f of I_ref and reduced to one connected component M,
  beta ~ U(0, 0.8), I_tar = I_ref (1 - M) + ((1 - beta) I_tex + beta I_ref) M; then a mild
  brightness jitter and a small rotation are applied to I_tar and M together; box = tight box of M.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .boxes import ZERO_BOX, Box, box_from_mask
from .coords import PixelTransform
from .errors import ConfigError, DatasetError
from .fileio import atomic_write_json
from .images import IMAGE_EXTENSIONS, to_rgb8

NORMAL_PROB = 0.25
BETA_RANGE = (0.0, 0.8)
TEXTURE_FAMILIES = ("noise", "stripes", "cracks", "speckle", "blobs")
PRODUCT_KINDS = ("disc", "plate", "pcb", "screw")
IMAGE_EXTS = IMAGE_EXTENSIONS  # the older name, kept for callers
SYNTH_SUBSET = "synthetic"

Size = tuple[int, int]  # (width, height)


def _size(size: int | Size) -> Size:
    w, h = (size, size) if isinstance(size, (int, np.integer)) else size
    if int(w) < 8 or int(h) < 8:
        raise ConfigError(f"image size {w}x{h} is too small; expected at least 8x8 pixels")
    return int(w), int(h)


# ----------------------------------------------------------------------------------------------
# Perlin noise


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


def fractal_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator, octaves: int = 3) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------------
# Foreground and components


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
    border = np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3),
                             lab[:, :b].reshape(-1, 3), lab[:, -b:].reshape(-1, 3)])
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


# ----------------------------------------------------------------------------------------------
# Procedural textures


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
        cv2.polylines(img, [np.round(np.array(pts)).astype(np.int32)], False, line.tolist(),
                      int(rng.integers(1, 4)), cv2.LINE_AA)
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


# ----------------------------------------------------------------------------------------------
# Procedural defect-free products


def _background(w: int, h: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    level = float(rng.choice([rng.uniform(25, 70), rng.uniform(190, 235)]))
    tint = rng.uniform(-8, 8, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = rng.uniform(-10, 10) * (xx / w - 0.5) + rng.uniform(-10, 10) * (yy / h - 0.5)
    img = (level + tint)[None, None, :] + grad[..., None]
    return img.astype(np.float32), level


def _part_colour(bg_level: float, rng: np.random.Generator, grey: bool = True) -> list[float]:
    """A colour far from the background, so the product has a clear foreground."""
    level = rng.uniform(140, 215) if bg_level < 128 else rng.uniform(45, 120)
    c = np.full(3, level) + (rng.uniform(-6, 6, 3) if grey else rng.uniform(-40, 40, 3))
    return np.clip(c, 0, 255).tolist()


def _shade(c: Sequence[float], f: float) -> list[float]:
    return [float(np.clip(v * f, 0, 255)) for v in c]


def _draw_disc(img: np.ndarray, bg: list[float], level: float, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    c = (int(w / 2 + rng.uniform(-0.05, 0.05) * w), int(h / 2 + rng.uniform(-0.05, 0.05) * h))
    r = int(min(w, h) * rng.uniform(0.3, 0.4))
    col = _part_colour(level, rng)
    cv2.circle(img, c, r, col, -1, cv2.LINE_AA)
    cv2.circle(img, c, int(r * 0.82), _shade(col, 0.88), max(1, r // 30), cv2.LINE_AA)
    for k in range(int(rng.integers(4, 9))):  # bolt holes on a pitch circle
        a = 2 * np.pi * k / 8 + rng.uniform(0, 0.1)
        p = (int(c[0] + 0.62 * r * np.cos(a)), int(c[1] + 0.62 * r * np.sin(a)))
        cv2.circle(img, p, max(2, r // 14), _shade(col, 0.6), -1, cv2.LINE_AA)
    cv2.circle(img, c, int(r * rng.uniform(0.2, 0.32)), bg, -1, cv2.LINE_AA)  # centre bore


def _draw_plate(img: np.ndarray, bg: list[float], level: float, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    mw, mh = int(w * rng.uniform(0.12, 0.2)), int(h * rng.uniform(0.18, 0.28))
    x1, y1, x2, y2 = mw, mh, w - mw, h - mh
    rad = max(2, min(x2 - x1, y2 - y1) // 8)
    col = _part_colour(level, rng, grey=bool(rng.random() < 0.6))
    cv2.rectangle(img, (x1 + rad, y1), (x2 - rad, y2), col, -1, cv2.LINE_AA)
    cv2.rectangle(img, (x1, y1 + rad), (x2, y2 - rad), col, -1, cv2.LINE_AA)
    for cx, cy in ((x1 + rad, y1 + rad), (x2 - rad, y1 + rad), (x1 + rad, y2 - rad), (x2 - rad, y2 - rad)):
        cv2.circle(img, (cx, cy), rad, col, -1, cv2.LINE_AA)
        cv2.circle(img, (cx, cy), max(2, rad // 2), bg, -1, cv2.LINE_AA)  # mounting holes
    for _ in range(int(rng.integers(2, 5))):  # engraved slots
        sx = int(rng.uniform(x1 + 2 * rad, x2 - 4 * rad))
        sy = int(rng.uniform(y1 + 2 * rad, y2 - 2 * rad))
        cv2.rectangle(img, (sx, sy), (sx + int(rng.uniform(2, 5) * rad), sy + max(2, rad // 3)),
                      _shade(col, 0.75), -1, cv2.LINE_AA)


def _draw_pcb(img: np.ndarray, bg: list[float], level: float, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    x1, y1 = int(w * rng.uniform(0.08, 0.14)), int(h * rng.uniform(0.1, 0.18))
    x2, y2 = w - int(w * rng.uniform(0.08, 0.14)), h - int(h * rng.uniform(0.1, 0.18))
    board = [float(rng.uniform(10, 40)), float(rng.uniform(90, 140)), float(rng.uniform(40, 80))]
    cv2.rectangle(img, (x1, y1), (x2, y2), board, -1)
    copper = [200.0, 150.0, 60.0]
    t = max(1, min(w, h) // 120)
    for _ in range(int(rng.integers(6, 14))):  # traces: horizontal then vertical runs
        px, py = int(rng.uniform(x1 + 4, x2 - 4)), int(rng.uniform(y1 + 4, y2 - 4))
        qx, qy = int(rng.uniform(x1 + 4, x2 - 4)), int(rng.uniform(y1 + 4, y2 - 4))
        cv2.line(img, (px, py), (qx, py), copper, t, cv2.LINE_AA)
        cv2.line(img, (qx, py), (qx, qy), copper, t, cv2.LINE_AA)
        cv2.circle(img, (px, py), 2 * t + 1, copper, -1, cv2.LINE_AA)
        cv2.circle(img, (qx, qy), 2 * t + 1, copper, -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 4))):  # chips with pins and a pin-1 mark
        cw, ch = int((x2 - x1) * rng.uniform(0.15, 0.3)), int((y2 - y1) * rng.uniform(0.15, 0.3))
        cx, cy = int(rng.uniform(x1 + 6, x2 - cw - 6)), int(rng.uniform(y1 + 6, y2 - ch - 6))
        for k in range(1, 6):
            px = cx + k * cw // 6
            cv2.line(img, (px, cy - 3 * t), (px, cy + ch + 3 * t), [205.0, 205.0, 205.0], t)
        cv2.rectangle(img, (cx, cy), (cx + cw, cy + ch), [25.0, 25.0, 28.0], -1)
        cv2.circle(img, (cx + 3 * t + 2, cy + 3 * t + 2), t + 1, [200.0, 200.0, 200.0], -1, cv2.LINE_AA)


def _draw_screw(img: np.ndarray, bg: list[float], level: float, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    col = _part_colour(level, rng)
    length, width = min(w, h) * rng.uniform(0.5, 0.7), min(w, h) * rng.uniform(0.09, 0.13)
    ang = rng.uniform(0, np.pi)
    d = np.array([np.cos(ang), np.sin(ang)])
    n = np.array([-d[1], d[0]])
    c = np.array([w / 2, h / 2]) + rng.uniform(-0.04, 0.04, 2) * (w, h)
    head, tip = c - d * length / 2, c + d * length / 2
    shaft = np.array([head + n * width / 2, tip + n * width / 3, tip - n * width / 3, head - n * width / 2])
    cv2.fillConvexPoly(img, np.round(shaft).astype(np.int32), col, cv2.LINE_AA)
    thread = _shade(col, 0.7)
    for k in range(1, int(length / max(3.0, width / 2.5))):  # thread lines across the shaft
        p = head + d * k * max(3.0, width / 2.5)
        if np.linalg.norm(p - head) > length * 0.95:
            break
        a, b = p + n * width / 2.2 + d * 2, p - n * width / 2.2 - d * 2
        cv2.line(img, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), thread, 1, cv2.LINE_AA)
    r = int(width * 1.1)
    hc = tuple(np.round(head).astype(int))
    cv2.circle(img, hc, r, _shade(col, 1.08), -1, cv2.LINE_AA)
    slot = np.array([head - n * r * 0.7, head + n * r * 0.7])
    cv2.line(img, tuple(np.round(slot[0]).astype(int)), tuple(np.round(slot[1]).astype(int)),
             _shade(col, 0.45), max(2, r // 4), cv2.LINE_AA)


_PRODUCTS: dict[str, Callable[[np.ndarray, list[float], float, np.random.Generator], None]] = {
    "disc": _draw_disc,
    "plate": _draw_plate,
    "pcb": _draw_pcb,
    "screw": _draw_screw,
}


def procedural_normal(size: int | Size, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """A defect-free uint8 RGB product image (one of ``PRODUCT_KINDS``) on a plain background.

    The part contrasts clearly with the background, so ``foreground_mask`` finds it; fine details
    (holes, traces, threads) give defects something to hide among.
    """
    w, h = _size(size)
    if kind is None:
        kind = PRODUCT_KINDS[int(rng.integers(len(PRODUCT_KINDS)))]
    if kind not in _PRODUCTS:
        raise ConfigError(f"unknown product kind {kind!r}; known: {', '.join(PRODUCT_KINDS)}")
    img, level = _background(w, h, rng)
    bg = img[h // 2, w // 2].tolist()
    _PRODUCTS[kind](img, bg, level, rng)
    img += rng.normal(0, 1.5, img.shape).astype(np.float32)  # sensor noise
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Algorithm 1


@dataclass(frozen=True)
class SynthPair:
    """A synthetic target for a reference: ``mask`` uint8 (255 = anomaly), ``box`` its tight pixel box."""

    target: np.ndarray
    mask: np.ndarray
    box: Box
    normal: bool
    beta: float | None = None
    angle: float = 0.0
    gain: float = 1.0

    @property
    def is_anomaly(self) -> bool:
        return not self.box.is_zero


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


def _defect_mask(fg: np.ndarray, rng: np.random.Generator, min_area: int, attempts: int = 12) -> np.ndarray:
    """M = one connected component of (M_p ∩ M_f), at least ``min_area`` px; an ellipse as last resort."""
    h, w = fg.shape
    for _ in range(attempts):
        m = largest_component(perlin_mask((h, w), rng) & fg)
        if m.sum() >= min_area:
            return m
    ys, xs = np.nonzero(fg)  # Perlin kept missing a thin foreground: an ellipse centred on it
    k = int(rng.integers(len(xs)))
    m = np.zeros((h, w), np.uint8)
    axes = (max(2, int(w * rng.uniform(0.03, 0.08))), max(2, int(h * rng.uniform(0.03, 0.08))))
    cv2.ellipse(m, (int(xs[k]), int(ys[k])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return largest_component(m.astype(bool) & fg)  # non-empty: the centre pixel is foreground


def _jitter_rotate(img: np.ndarray, mask: np.ndarray, angle: float, gain: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Brightness jitter + rotation about the centre, applied to image and mask together."""
    h, w = mask.shape
    out = np.clip(img.astype(np.float32) * gain + offset, 0, 255)
    if angle:
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        out = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.clip(np.round(out), 0, 255).astype(np.uint8), mask


def synthesize_pair(
    reference: np.ndarray,
    textures: Sequence[np.ndarray] | None,
    rng: np.random.Generator,
    *,
    normal: bool | None = None,
    normal_prob: float = NORMAL_PROB,
    beta_range: tuple[float, float] = BETA_RANGE,
    foreground: np.ndarray | None = None,
    max_angle: float = 3.0,
    brightness: float = 0.08,
    min_area_frac: float = 0.002,
) -> SynthPair:
    """One run of Algorithm 1 on ``reference`` (uint8 RGB). ``normal=None`` draws it with ``normal_prob``.

    ``textures=None`` (or empty) draws a procedural texture; ``foreground`` overrides
    ``foreground_mask(reference)``. Jitter: gain ~ U(1 ± brightness), offset ~ U(± 255·brightness/2),
    angle ~ U(± max_angle) degrees, applied to target and mask together (normals too, so a model
    learns that lighting and pose changes are not defects).
    """
    ref = np.asarray(reference)
    if ref.dtype != np.uint8 or ref.ndim != 3 or ref.shape[2] != 3:
        raise ConfigError(f"reference must be uint8 RGB HxWx3, got {ref.dtype} {ref.shape}; use images.to_rgb8")
    if not 0.0 <= beta_range[0] <= beta_range[1] <= 1.0:
        raise ConfigError(f"beta_range must satisfy 0 <= lo <= hi <= 1, got {beta_range}")
    h, w = ref.shape[:2]
    if normal is None:
        normal = bool(rng.random() < normal_prob)
    mask = np.zeros((h, w), np.uint8)
    beta: float | None = None
    target = ref
    if not normal:
        if textures is not None and len(textures) > 0:
            tex_src = textures[int(rng.integers(len(textures)))]
        else:
            tex_src = procedural_texture((w, h), rng)
        tex = augment_texture(tex_src, (w, h), rng)
        fg = foreground_mask(ref) if foreground is None else np.asarray(foreground).astype(bool)
        if fg.shape != (h, w) or not fg.any():
            raise ConfigError(f"foreground mask must be a non-empty {h}x{w} array, got shape {fg.shape}")
        m = _defect_mask(fg, rng, max(4, int(min_area_frac * h * w)))
        beta = float(rng.uniform(*beta_range))
        mf = m[..., None].astype(np.float32)
        blend = (1.0 - beta) * tex + beta * ref.astype(np.float32)
        target = ref.astype(np.float32) * (1.0 - mf) + blend * mf
        mask = m.astype(np.uint8) * 255
    angle = float(rng.uniform(-max_angle, max_angle)) if max_angle > 0 else 0.0
    gain = float(rng.uniform(1.0 - brightness, 1.0 + brightness))
    offset = float(rng.uniform(-127.5 * brightness, 127.5 * brightness))
    tgt, msk = _jitter_rotate(target, mask, angle, gain, offset)
    if not normal and not msk.any():  # rotated out of the frame (tiny defect at a corner): keep it upright
        angle = 0.0
        tgt, msk = _jitter_rotate(target, mask, 0.0, gain, offset)
    return SynthPair(tgt, msk, box_from_mask(msk) if not normal else ZERO_BOX, normal, beta, angle, gain)


# ----------------------------------------------------------------------------------------------
# Datasets on disk


def _image_files(source: str | os.PathLike | Sequence[str | os.PathLike], what: str) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if not root.is_dir():
            raise DatasetError(f"{what} folder not found: {root}; expected a folder of images or a list of paths")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    else:
        files = [Path(p) for p in source]
    if not files:
        raise DatasetError(f"no {what} images found in {source!r}; expected {', '.join(IMAGE_EXTS)} files")
    return files


def _fit_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` and centre-crop to ``size x size`` (no distortion)."""
    h, w = img.shape[:2]
    s = size / min(h, w)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    r = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(r[y0:y0 + size, x0:x0 + size])


def _normal_quota(count: int, seed: int) -> np.ndarray:
    """Exactly round(25 %) of the samples are normal, at seed-determined positions."""
    flags = np.zeros(count, bool)
    flags[: int(round(NORMAL_PROB * count))] = True
    return np.random.default_rng([seed, 0x5EED]).permutation(flags)


def generate_dataset(
    out_dir: str | os.PathLike,
    count: int,
    seed: int,
    normals: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    textures: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    size: int = 256,
    progress: bool = True,
) -> Path:
    """Write ``count`` synthetic pairs (PNG images, masks, ``pairs.jsonl``) into ``out_dir``.

    Sample ``i`` depends only on ``(seed, i)`` (plus the normal/anomalous assignment, exactly 25 %
    normal), so the same call always writes the same files. Without ``normals`` each reference is
    a procedural product (category = its kind); with a folder/list of images, category = the
    image's parent folder name. Also writes ``synth.json`` (parameters) and ``preview.png``.
    Returns the path of ``pairs.jsonl``.
    """
    from tqdm import tqdm

    from .dataset import Pair, write_pairs
    from .images import load_image, save_image

    if count < 1:
        raise ConfigError(f"count must be >= 1, got {count}")
    _size(size)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir {out} exists and is not a folder; pass a folder path")
    normal_files = _image_files(normals, "normal") if normals is not None else None
    tex_images = [load_image(p) for p in _image_files(textures, "texture")] if textures is not None else None
    flags = _normal_quota(count, seed)
    pairs: list[Pair] = []
    previews: list[np.ndarray] = []
    for i in tqdm(range(count), desc="synthesizing pairs", unit="pair", disable=not progress):
        rng = np.random.default_rng([seed, i])
        if normal_files is None:
            kind = PRODUCT_KINDS[int(rng.integers(len(PRODUCT_KINDS)))]
            ref = procedural_normal(size, rng, kind)
        else:
            src = normal_files[i % len(normal_files)]
            ref = _fit_square(load_image(src), size)
            kind = src.parent.name or "custom"
        sp = synthesize_pair(ref, tex_images, rng, normal=bool(flags[i]))
        sid = f"{i:06d}"
        ref_p, tgt_p, mask_p = out / "images" / f"{sid}_ref.png", out / "images" / f"{sid}_tgt.png", out / "masks" / f"{sid}.png"
        save_image(ref_p, ref)
        save_image(tgt_p, sp.target)
        save_image(mask_p, sp.mask)
        pairs.append(Pair(sid, ref_p, tgt_p, sp.box, kind, SYNTH_SUBSET, mask_p))
        if len(previews) < 8:
            from .viz import side_by_side

            previews.append(side_by_side(ref, sp.target, gt=sp.box, titles=("reference", f"target {sid}")))
    path = write_pairs(out / "pairs.jsonl", pairs)
    atomic_write_json(out / "synth.json", {
        "generator": "differad_edge.synth", "algorithm": "DifferAD-R1 Algorithm 1", "count": count, "seed": seed,
        "size": size, "normal_prob": NORMAL_PROB, "beta_range": list(BETA_RANGE),
        "normals": None if normal_files is None else [str(p) for p in normal_files],
        "textures": None if textures is None else "folder" if isinstance(textures, (str, os.PathLike)) else "list",
        "n_normal": int(flags.sum()), "n_anomalous": int(count - flags.sum()),
    })
    from .viz import contact_sheet

    save_image(out / "preview.png", contact_sheet(previews, cols=2))
    return path


# ----------------------------------------------------------------------------------------------
# Inspection sets (demos, engine tests)


@dataclass
class Product:
    """One product of an inspection set: a reference, good parts, and defective parts with GT boxes."""

    id: str
    kind: str
    reference: np.ndarray
    goods: list[np.ndarray] = field(default_factory=list)
    defects: list[np.ndarray] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    #: reference px -> image px of each good / defective part (the true alignment, for tests)
    good_warps: list[PixelTransform] = field(default_factory=list)
    defect_warps: list[PixelTransform] = field(default_factory=list)


@dataclass
class InspectionSet:
    products: list[Product]
    pairs_path: Path | None = None


def vary(img: np.ndarray, rng: np.random.Generator, max_shift: float = 2.0, brightness: float = 0.05,
         noise: float = 2.0, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, PixelTransform]:
    """A "same part, next frame" variation: sub-pixel shift, brightness gain/offset, sensor noise.

    Returns the image, the mask moved with it (nearest), and the shift as a ``PixelTransform``
    (source pixels -> varied pixels).
    """
    h, w = img.shape[:2]
    dx, dy = rng.uniform(-max_shift, max_shift, 2) if max_shift > 0 else (0.0, 0.0)
    t = PixelTransform.translate(float(dx), float(dy))
    m = t.matrix[:2].astype(np.float32)
    out = cv2.warpAffine(img.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = out * rng.uniform(1 - brightness, 1 + brightness) + rng.uniform(-127.5 * brightness, 127.5 * brightness)
    if noise > 0:
        out = out + rng.normal(0, noise, out.shape)
    moved = None
    if mask is not None:
        moved = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.clip(np.round(out), 0, 255).astype(np.uint8), moved, t


def _visible(ref: np.ndarray, tgt: np.ndarray, mask: np.ndarray, min_contrast: float) -> bool:
    sel = mask > 0
    if not sel.any():
        return False
    diff = np.abs(ref.astype(np.int16) - tgt.astype(np.int16)).max(axis=2)
    return float(diff[sel].mean()) >= min_contrast


def make_inspection_set(
    out_dir: str | os.PathLike | None = None,
    *,
    kinds: Sequence[str] = ("disc", "pcb", "screw"),
    goods: int = 4,
    defects: int = 4,
    size: int = 256,
    seed: int = 0,
    max_shift: float = 2.0,
    brightness: float = 0.05,
    noise: float = 2.0,
    min_contrast: float = 30.0,
) -> InspectionSet:
    """A few products, each with a reference, ``goods`` good variations and ``defects`` defective parts.

    Good parts and defective parts get the same kind of variation (shift, brightness, noise), so a
    detector must tell defects from frame-to-frame changes. Defects are Algorithm 1 pasted textures
    (beta <= 0.4, mean contrast >= ``min_contrast`` grey levels), GT box = tight box of the moved mask.
    With ``out_dir``: PNGs under ``<out_dir>/<product>/`` and a ``pairs.jsonl`` (goods are normal
    pairs, category = product id, subset ``"inspection"``).
    """
    from .dataset import Pair, write_pairs
    from .images import save_image

    if goods < 0 or defects < 0 or not kinds:
        raise ConfigError(f"need kinds and non-negative counts, got kinds={kinds!r}, goods={goods}, defects={defects}")
    products: list[Product] = []
    for k, kind in enumerate(kinds):
        rng = np.random.default_rng([seed, k, 0x1A5])
        ref = procedural_normal(size, rng, kind)
        fg = foreground_mask(ref)
        prod = Product(f"{kind}-{k}", kind, ref)
        for _ in range(goods):
            img, _, warp = vary(ref, rng, max_shift, brightness, noise)
            prod.goods.append(img)
            prod.good_warps.append(warp)
        for _ in range(defects):
            for _attempt in range(20):
                sp = synthesize_pair(ref, None, rng, normal=False, beta_range=(0.0, 0.4), foreground=fg,
                                     max_angle=0.0, brightness=0.0, min_area_frac=0.004)
                if _visible(ref, sp.target, sp.mask, min_contrast):
                    break
            img, mask, warp = vary(sp.target, rng, max_shift, brightness, noise, mask=sp.mask)
            box = box_from_mask(mask)
            prod.defect_warps.append(warp)
            prod.defects.append(img)
            prod.masks.append(mask)
            prod.boxes.append(box)
        products.append(prod)
    pairs_path = None
    if out_dir is not None:
        out = Path(out_dir)
        pairs: list[Pair] = []
        for p in products:
            d = out / p.id
            ref_p = d / "reference.png"
            save_image(ref_p, p.reference)
            for j, g in enumerate(p.goods):
                save_image(d / f"good_{j:02d}.png", g)
                pairs.append(Pair(f"{p.id}/good_{j:02d}", ref_p, d / f"good_{j:02d}.png", ZERO_BOX, p.id, "inspection"))
            for j, (img, box, mask) in enumerate(zip(p.defects, p.boxes, p.masks, strict=True)):
                save_image(d / f"defect_{j:02d}.png", img)
                save_image(d / f"defect_{j:02d}_mask.png", mask)
                pairs.append(Pair(f"{p.id}/defect_{j:02d}", ref_p, d / f"defect_{j:02d}.png", box, p.id,
                                  "inspection", d / f"defect_{j:02d}_mask.png"))
        pairs_path = write_pairs(out / "pairs.jsonl", pairs)
    return InspectionSet(products, pairs_path)
