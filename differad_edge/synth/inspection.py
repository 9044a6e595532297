"""Inspection sets for demos and engine tests: products with good and defective parts, true warps and GT."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..boxes import ZERO_BOX, Box, box_from_mask
from ..coords import PixelTransform
from ..errors import ConfigError
from .masks import foreground_mask
from .normals import procedural_normal
from .pairs import synthesize_pair


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


def vary(
    img: np.ndarray,
    rng: np.random.Generator,
    max_shift: float = 2.0,
    brightness: float = 0.05,
    noise: float = 2.0,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, PixelTransform]:
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
    from ..dataset import Pair, write_pairs
    from ..images import save_image

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
                sp = synthesize_pair(
                    ref,
                    None,
                    rng,
                    normal=False,
                    beta_range=(0.0, 0.4),
                    foreground=fg,
                    max_angle=0.0,
                    brightness=0.0,
                    min_area_frac=0.004,
                )
                if _visible(ref, sp.target, sp.mask, min_contrast):
                    break
            img, moved, warp = vary(sp.target, rng, max_shift, brightness, noise, mask=sp.mask)
            mask = sp.mask if moved is None else moved  # moved is None only without a mask
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
                pairs.append(
                    Pair(
                        f"{p.id}/defect_{j:02d}",
                        ref_p,
                        d / f"defect_{j:02d}.png",
                        box,
                        p.id,
                        "inspection",
                        d / f"defect_{j:02d}_mask.png",
                    )
                )
        pairs_path = write_pairs(out / "pairs.jsonl", pairs)
    return InspectionSet(products, pairs_path)
