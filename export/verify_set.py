"""The pairs an export is verified on: a ``pairs.jsonl`` file, or synthetic pairs made on the fly.

Synthetic pairs use ``differad_edge.synth`` (Algorithm 1) when it is installed; otherwise a small
OpenCV generator below (smooth texture + one painted blob, a quarter of them defect-free), so an
export can always verify agreement without a dataset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from differad_edge.errors import DatasetError
from differad_edge.images import load_image

Pair = tuple[np.ndarray, np.ndarray]


def load_pairs_file(path: str | os.PathLike, limit: int | None = None) -> list[Pair]:
    """(reference, target) images of a ``pairs.jsonl`` (paths relative to the file)."""
    p = Path(path)
    try:
        from differad_edge.dataset import read_pairs
    except ImportError:
        read_pairs = None
    if read_pairs is not None:
        pf = read_pairs(p)
        items = [(pr.reference, pr.target) for pr in pf.pairs]
    else:
        items = _read_jsonl(p)
    if not items:
        raise DatasetError(f"verify set {p} has no usable pairs; expected JSON lines with 'reference' and 'target'")
    items = items[:limit] if limit else items
    return [(load_image(r), load_image(t)) for r, t in items]


def _read_jsonl(p: Path) -> list[tuple[Path, Path]]:
    if not p.is_file():
        raise DatasetError(f"verify set {p} not found; pass a pairs.jsonl or leave --verify out for synthetic pairs")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out.append((p.parent / rec["reference"], p.parent / rec["target"]))
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{p}:{n}: bad line ({e}); expected {{\"reference\": ..., \"target\": ...}}") from e
    return out


def synthetic_pairs(count: int, size: int = 256, seed: int = 0) -> list[Pair]:
    """``count`` deterministic (reference, target) pairs of ``size`` x ``size`` pixels."""
    try:
        from differad_edge import synth
    except ImportError:
        synth = None
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        ref = _texture(size, rng)
        if synth is not None and hasattr(synth, "synthesize_pair"):
            textures = [_texture(size, rng)]
            tgt = synth.synthesize_pair(ref, textures, rng).target
        else:
            tgt = ref.copy() if i % 4 == 3 else _paint_defect(ref, rng)
        pairs.append((ref, tgt))
    return pairs


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    small = rng.integers(40, 215, (8, 8, 3), dtype=np.uint8)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _paint_defect(ref: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = ref.shape[:2]
    tgt = ref.copy()
    cx, cy = int(rng.integers(w // 8, 7 * w // 8)), int(rng.integers(h // 8, 7 * h // 8))
    axes = (int(rng.integers(w // 20, w // 6)), int(rng.integers(h // 20, h // 6)))
    color = tuple(int(c) for c in rng.integers(0, 255, 3))
    cv2.ellipse(tgt, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
    return tgt
