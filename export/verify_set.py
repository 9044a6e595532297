"""The pairs an export is verified on: a ``pairs.jsonl`` file, or synthetic pairs made on the fly.

Synthetic pairs use ``differad_edge.synth`` (Algorithm 1) when it is installed; otherwise a small
OpenCV generator below (smooth texture + one painted blob, a quarter of them defect-free), so an
export can always verify agreement without a dataset.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from differad_edge.errors import DatasetError
from differad_edge.images import load_image

Pair = tuple[np.ndarray, np.ndarray]


def load_pairs_file(path: str | os.PathLike, limit: int | None = None) -> list[Pair]:
    """(reference, target) images of a ``pairs.jsonl`` (paths relative to the file)."""
    p = Path(path)
    dataset = _optional("differad_edge.dataset")
    problems: list[str] = []
    if dataset is not None:
        pf = dataset.read_pairs(p)
        items = [(pr.reference, pr.target) for pr in pf.pairs]
        problems = list(pf.errors)
    else:
        items = _read_jsonl(p)
    if not items:
        why = f" ({'; '.join(problems[:3])})" if problems else ""
        raise DatasetError(
            f"verify set {p} has no usable pairs{why}; expected JSON lines with 'reference', "
            "'target', 'box' and 'category' (see differad_edge.dataset)"
        )
    items = items[:limit] if limit else items
    return [(load_image(r), load_image(t)) for r, t in items]


def _optional(module: str) -> ModuleType | None:
    """A sibling core module when installed (the verify set works without them)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


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
            raise DatasetError(f'{p}:{n}: bad line ({e}); expected {{"reference": ..., "target": ...}}') from e
    return out


def synthetic_pairs(count: int, size: int = 256, seed: int = 0) -> list[Pair]:
    """``count`` deterministic (reference, target) pairs of ``size`` x ``size`` pixels."""
    synth = _optional("differad_edge.synth")
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        if synth is not None:  # Algorithm 1: product image + texture anomaly (a quarter normal)
            ref = synth.procedural_normal(size, rng)
            tgt = synth.synthesize_pair(ref, [synth.procedural_texture(size, rng)], rng).target
        else:
            ref = _texture(size, rng)
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
