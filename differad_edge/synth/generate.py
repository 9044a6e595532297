"""Synthetic training sets on disk: ``generate_dataset`` writes images, masks and ``pairs.jsonl``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError, DatasetError
from ..fileio import atomic_write_json
from ..images import IMAGE_EXTENSIONS
from ._common import _size
from .normals import PRODUCT_KINDS, procedural_normal
from .pairs import BETA_RANGE, NORMAL_PROB, synthesize_pair

IMAGE_EXTS = IMAGE_EXTENSIONS  # the older name, kept for callers
SYNTH_SUBSET = "synthetic"


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
    return np.ascontiguousarray(r[y0 : y0 + size, x0 : x0 + size])


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

    from ..dataset import Pair, write_pairs
    from ..images import load_image, save_image

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
        ref_p, tgt_p, mask_p = (
            out / "images" / f"{sid}_ref.png",
            out / "images" / f"{sid}_tgt.png",
            out / "masks" / f"{sid}.png",
        )
        save_image(ref_p, ref)
        save_image(tgt_p, sp.target)
        save_image(mask_p, sp.mask)
        pairs.append(Pair(sid, ref_p, tgt_p, sp.box, kind, SYNTH_SUBSET, mask_p))
        if len(previews) < 8:
            from ..viz import side_by_side

            previews.append(side_by_side(ref, sp.target, gt=sp.box, titles=("reference", f"target {sid}")))
    path = write_pairs(out / "pairs.jsonl", pairs)
    atomic_write_json(
        out / "synth.json",
        {
            "generator": "differad_edge.synth",
            "algorithm": "DifferAD-R1 Algorithm 1",
            "count": count,
            "seed": seed,
            "size": size,
            "normal_prob": NORMAL_PROB,
            "beta_range": list(BETA_RANGE),
            "normals": None if normal_files is None else [str(p) for p in normal_files],
            "textures": None if textures is None else "folder" if isinstance(textures, (str, os.PathLike)) else "list",
            "n_normal": int(flags.sum()),
            "n_anomalous": int(count - flags.sum()),
        },
    )
    from ..viz import contact_sheet

    save_image(out / "preview.png", contact_sheet(previews, cols=2))
    return path
