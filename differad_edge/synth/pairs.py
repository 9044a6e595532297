"""One synthetic anomaly pair (paper III-C, Algorithm 1), deterministic by the caller's generator.

Algorithm 1, per defect-free reference I_ref:
  with p = 0.25 the target is I_ref (empty mask, zero box); otherwise a thresholded Perlin mask
  M_p is intersected with the foreground M_f of I_ref and reduced to one connected component M,
  beta ~ U(0, 0.8), I_tar = I_ref (1 - M) + ((1 - beta) I_tex + beta I_ref) M; then a mild
  brightness jitter and a small rotation are applied to I_tar and M together; box = tight box of M.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..boxes import ZERO_BOX, Box, box_from_mask
from ..errors import ConfigError
from .masks import foreground_mask, largest_component
from .noise import perlin_mask
from .textures import augment_texture, procedural_texture

NORMAL_PROB = 0.25
BETA_RANGE = (0.0, 0.8)


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


def _jitter_rotate(
    img: np.ndarray, mask: np.ndarray, angle: float, gain: float, offset: float
) -> tuple[np.ndarray, np.ndarray]:
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
