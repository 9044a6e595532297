"""Qwen3-VL image preprocessing and position ids in numpy, so an ONNX bundle runs without PyTorch.

Mirrors ``Qwen2VLImageProcessorPil`` with ``do_resize=False`` (the vlm ``SizePolicy`` resizes; rescale, normalize,
16x16 patches, temporal patch 2, 2x2 merge order) and the vision tower's grid-dependent host inputs
(``transformers.vision_utils``); the export tests check both against transformers bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ImageError


@dataclass(frozen=True)
class ImageSpec:
    """What the bundle's vision graph expects; stored in the manifest as ``preprocessing``."""

    patch_size: int = 16
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    rescale_factor: float = 1 / 255
    num_grid_per_side: int = 48
    interpolation_align_corners: bool = True

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_mean"], d["image_std"] = list(self.image_mean), list(self.image_std)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageSpec:
        d = dict(data)
        d["image_mean"], d["image_std"] = tuple(d["image_mean"]), tuple(d["image_std"])
        return cls(**d)


def patchify(image: np.ndarray, spec: ImageSpec) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB HxWx3 -> (pixel_values [N, 3*T*P*P] float32, grid_thw [1, 3] int64)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected a uint8 RGB HxWx3 image, got {image.dtype} {image.shape}; use images.to_rgb8")
    h, w = image.shape[:2]
    if h % spec.factor or w % spec.factor:  # resizing is the vlm SizePolicy's job, as in the vlm engine
        raise ImageError(f"image {w}x{h} must have sides that are multiples of {spec.factor}; apply the size policy")
    scaled = (image.astype(np.float64) * spec.rescale_factor).astype(np.float32)
    x = (scaled - np.asarray(spec.image_mean, np.float32)) / np.asarray(spec.image_std, np.float32)
    x = x.transpose(2, 0, 1)  # CHW
    p, m, t = spec.patch_size, spec.merge_size, spec.temporal_patch_size
    gh, gw = h // p, w // p
    x = x.reshape(3, gh // m, m, p, gw // m, m, p).transpose(1, 4, 2, 5, 0, 3, 6)
    x = np.broadcast_to(x[:, :, :, :, :, None], (*x.shape[:5], t, p, p))
    return np.ascontiguousarray(x.reshape(gh * gw, 3 * t * p * p)), np.array([[1, gh, gw]], np.int64)


def _merge_order_rows_cols(gh: int, gw: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Row/col of each patch in the processor's 2x2-merge-block order."""
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    shape = (gh // m, m, gw // m, m)
    return rows.reshape(shape).transpose(0, 2, 1, 3).ravel(), cols.reshape(shape).transpose(0, 2, 1, 3).ravel()


def _bilinear_taps(index: np.ndarray, size: int, side: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray]:
    index = index.astype(np.float32)
    if align_corners:
        src = index * np.float32(side - 1) / np.float32(max(size - 1, 1))
    else:
        src = (index + np.float32(0.5)) * np.float32(side) / np.float32(size) - np.float32(0.5)
    floor = np.floor(src)
    offsets = np.arange(2)
    taps = np.clip(floor.astype(np.int64)[:, None] + offsets, 0, side - 1)
    weights = np.clip(1 - np.abs(src[:, None] - floor[:, None] - offsets.astype(np.float32)), 0, None)
    return taps, weights.astype(np.float32)


def vision_host_inputs(grid_thw: np.ndarray, spec: ImageSpec) -> dict[str, np.ndarray]:
    """The grid-dependent inputs the exported vision graph takes (data-dependent ops kept off-graph)."""
    m, side = spec.merge_size, spec.num_grid_per_side
    idx, wts, pos, seqlens = [], [], [], []
    for t, gh, gw in np.asarray(grid_thw).tolist():
        rows, cols = _merge_order_rows_cols(gh, gw, m)
        ht, hw = _bilinear_taps(rows, gh, side, spec.interpolation_align_corners)
        wt, ww = _bilinear_taps(cols, gw, side, spec.interpolation_align_corners)
        i = (ht[:, :, None] * side + wt[:, None, :]).reshape(-1, 4)
        w = (hw[:, :, None] * ww[:, None, :]).reshape(-1, 4)
        idx.append(np.tile(i, (t, 1)))
        wts.append(np.tile(w, (t, 1)))
        pos.append(np.tile(np.stack([rows, cols], -1), (t, 1)))
        seqlens += [gh * gw] * t
    return {
        "interp_indices": np.concatenate(idx).astype(np.int64),
        "interp_weights": np.concatenate(wts).astype(np.float32),
        "rot_pos_ids": np.concatenate(pos).astype(np.int64),
        "cu_seqlens": np.concatenate([[0], np.cumsum(seqlens)]).astype(np.int32),
    }


def image_tokens(grid_thw: np.ndarray, merge_size: int) -> int:
    """Number of ``<|image_pad|>`` tokens (= merged vision features) of one image."""
    t, gh, gw = (int(v) for v in np.asarray(grid_thw).reshape(-1, 3)[0])
    return t * gh * gw // (merge_size * merge_size)


def mrope_positions(
    segments: list[tuple[str, int | tuple[int, int, int]]], merge_size: int, start: int = 0
) -> np.ndarray:
    """3D rope position ids [3, S] for a sequence of ``("text", n)`` and ``("image", grid_thw)`` runs.

    Same rule as ``Qwen3VLModel.get_rope_index``: text advances all three axes by one per token; an
    image places (t, h, w) on its merged grid offset by the running position, which then advances by
    ``max(h, w) / merge``. ``start`` continues a sequence (the suffix after a cached prefix).
    """
    out, cur = [], start
    for kind, value in segments:
        if kind == "text":
            n = int(value)  # type: ignore[arg-type]
            out.append(np.broadcast_to(np.arange(cur, cur + n), (3, n)))
            cur += n
        else:
            t, gh, gw = (int(v) for v in value)  # type: ignore[union-attr]
            lh, lw = gh // merge_size, gw // merge_size
            tt, hh, ww = np.meshgrid(np.arange(t), np.arange(lh), np.arange(lw), indexing="ij")
            out.append(np.stack([tt.ravel() + cur, hh.ravel() + cur, ww.ravel() + cur]))
            cur += max(gh, gw) // merge_size
    return np.concatenate(out, axis=1).astype(np.int64) if out else np.zeros((3, 0), np.int64)


def next_position(positions: np.ndarray, start: int = 0) -> int:
    """Position of the token after a run (``max + 1``), which decoding continues from."""
    return int(positions.max()) + 1 if positions.size else start
