"""Procedural defect-free products ("normals", I_ref): a few kinds of part on a plain background."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from ..errors import ConfigError
from ._common import Size, _size

PRODUCT_KINDS = ("disc", "plate", "pcb", "screw")


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
        cv2.rectangle(
            img,
            (sx, sy),
            (sx + int(rng.uniform(2, 5) * rad), sy + max(2, rad // 3)),
            _shade(col, 0.75),
            -1,
            cv2.LINE_AA,
        )


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
    cv2.line(
        img,
        tuple(np.round(slot[0]).astype(int)),
        tuple(np.round(slot[1]).astype(int)),
        _shade(col, 0.45),
        max(2, r // 4),
        cv2.LINE_AA,
    )


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
