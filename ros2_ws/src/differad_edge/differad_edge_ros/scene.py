"""Synthetic frames of a simulated inspection cell: one product image, defects with known boxes.

Deterministic by seed, drawn with OpenCV so a defect is plainly visible (the cell demo and the ROS
tests check the node's boxes against these ground-truth boxes, not the engine's sensitivity).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from differad_edge.boxes import ZERO_BOX, Box, box_from_mask


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # uint8 RGB
    box: Box  # ground truth in frame pixels; ZERO_BOX for a good part


def make_product(size: int = 800, seed: int = 0) -> np.ndarray:
    """A good part on a conveyor: a textured plate with holes and a label, uint8 RGB ``size x size``."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), (70, 74, 80), np.uint8)
    texture = cv2.GaussianBlur(rng.normal(0, 12, (size, size)).astype(np.float32), (0, 0), size / 200)
    c, r = size // 2, int(size * 0.4)
    cv2.circle(img, (c, c), r, (168, 170, 176), -1, cv2.LINE_AA)
    for k in range(6):
        a = 2 * np.pi * k / 6 + seed
        centre = (int(c + 0.7 * r * np.cos(a)), int(c + 0.7 * r * np.sin(a)))
        cv2.circle(img, centre, max(2, size // 40), (40, 42, 46), -1, cv2.LINE_AA)
    cv2.rectangle(img, (c - r // 3, c - r // 6), (c + r // 3, c + r // 6), (210, 190, 90), -1)
    return np.clip(img.astype(np.float32) + texture[..., None], 0, 255).astype(np.uint8)


def add_defect(reference: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    """``reference`` with one dark or bright blob or scratch on the plate; returns (image, tight box)."""
    h, w = reference.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    c, r = w // 2, int(min(h, w) * 0.4)
    angle = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(0.2, 0.8) * r
    centre = (int(c + dist * np.cos(angle)), int(c + dist * np.sin(angle)))
    side = min(h, w)
    if rng.random() < 0.5:
        axes = (int(rng.uniform(0.02, 0.06) * side), int(rng.uniform(0.02, 0.06) * side))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    else:
        length = rng.uniform(0.06, 0.15) * side
        d = (int(length * np.cos(angle + 1.2)), int(length * np.sin(angle + 1.2)))
        cv2.line(
            mask, (centre[0] - d[0], centre[1] - d[1]), (centre[0] + d[0], centre[1] + d[1]), 255, max(2, side // 150)
        )
    colour = np.array((25, 20, 18) if rng.random() < 0.5 else (250, 245, 235), np.uint8)
    out = reference.copy()
    out[mask > 0] = colour
    changed = np.abs(out.astype(np.int16) - reference).max(axis=2) > 40  # e.g. a dark scratch over a hole
    return out, box_from_mask(changed)


def make_frames(
    reference: np.ndarray, count: int, defect_rate: float = 0.5, seed: int = 0, noise: float = 2.0
) -> list[Frame]:
    """``count`` camera frames: good parts and defective ones (share ``defect_rate``), sensor noise added."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        image, box = add_defect(reference, rng) if rng.random() < defect_rate else (reference, ZERO_BOX)
        if noise > 0:
            image = np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)
        frames.append(Frame(image, box))
    return frames


SCENES = ("synth", "shapes")


def build_scene(
    scene: str, size: int, seed: int, count: int, defect_rate: float = 0.5
) -> tuple[np.ndarray, list[Frame]]:
    """The reference and ``count`` frames of a simulated cell, deterministic by ``seed``.

    ``synth``: a procedural part from :func:`differad_edge.synth.make_inspection_set` (Algorithm 1
    defects, frame-to-frame shift/brightness/noise: realistic, needs alignment). ``shapes``: this
    module's plate with plainly visible blobs and scratches, no motion (exact boxes for tests).
    """
    if scene == "shapes":
        reference = make_product(size, seed)
        return reference, make_frames(reference, count, defect_rate, seed=seed + 1)
    if scene != "synth":
        raise ValueError(f"unknown scene {scene!r}; expected one of {', '.join(SCENES)}")
    from differad_edge.synth import make_inspection_set

    n_defects = int(round(count * defect_rate))
    product = make_inspection_set(
        kinds=("disc",), goods=count - n_defects, defects=n_defects, size=size, seed=seed
    ).products[0]
    frames = [Frame(g, ZERO_BOX) for g in product.goods]
    frames += [Frame(d, b) for d, b in zip(product.defects, product.boxes, strict=True)]
    order = np.random.default_rng(seed).permutation(len(frames))
    return product.reference, [frames[i] for i in order]
