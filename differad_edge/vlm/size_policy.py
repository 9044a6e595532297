"""How big the images are that the VLM sees: the main latency knob, and a coordinate frame to undo.

Qwen3-VL turns each 32x32 block into one token (patch 16, merge 2), so an 800x800 image costs 625
tokens and 256x256 costs 64. We resize here (OpenCV) to sides that are multiples of ``factor``, with
the pixel count in ``[min_pixels, max_pixels]`` and the aspect ratio kept as closely as the grid
allows, and record the resize as a ``coords.PixelTransform`` so a box on the model's 0-1000 grid maps
back to the caller's pixels exactly. The processor is then told not to resize (``do_resize=False``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..boxes import Box
from ..coords import PixelTransform, from_model_scale
from ..errors import ConfigError, ImageError
from ..images import image_size

#: Qwen2/3-VL refuse images whose long side is more than 200x the short side.
MAX_ASPECT = 200.0


@dataclass(frozen=True)
class Resized:
    """An image as the model sees it, and the transform from the source pixels to it."""

    image: np.ndarray
    transform: PixelTransform  # source px -> model-input px
    source_size: tuple[int, int]  # (w, h)

    @property
    def size(self) -> tuple[int, int]:
        return image_size(self.image)

    def box_to_source(self, model_box: Box) -> Box:
        """A 0-1000 box on this image -> a box in source pixels (clipped to the source image)."""
        box = from_model_scale(model_box, *self.size)
        return self.transform.inverse().apply_box(box, clip_to=self.source_size)


@dataclass(frozen=True)
class SizePolicy:
    """Resize rule for model inputs (defaults: at most 800x800 worth of pixels = 625 tokens).

    ``factor`` must be a multiple of the model's ``patch_size * spatial_merge_size`` (32 for Qwen3-VL);
    the engine checks it against the loaded model.
    """

    max_pixels: int = 800 * 800
    min_pixels: int = 64 * 64
    factor: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.factor, int) or self.factor <= 0:
            raise ConfigError(f"size policy factor must be a positive integer, got {self.factor!r}")
        if not isinstance(self.min_pixels, int) or self.min_pixels < self.factor**2:
            raise ConfigError(
                f"min_pixels={self.min_pixels!r} is below one {self.factor}x{self.factor} block; "
                f"use at least {self.factor**2}"
            )
        if not isinstance(self.max_pixels, int) or self.max_pixels < self.min_pixels:
            raise ConfigError(f"max_pixels={self.max_pixels!r} must be an integer >= min_pixels={self.min_pixels}")

    @property
    def key(self) -> str:
        """Identity for cache keys: any change of the policy changes the reference prefix."""
        return f"max{self.max_pixels}-min{self.min_pixels}-f{self.factor}"

    def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(w, h)`` -> model-input ``(w', h')``: multiples of ``factor``, pixels within the bounds."""
        w, h = size
        if w <= 0 or h <= 0:
            raise ImageError(f"image size must be positive, got {w}x{h}")
        if max(w, h) / min(w, h) > MAX_ASPECT:
            raise ImageError(
                f"image of {w}x{h} has an aspect ratio above {MAX_ASPECT:g}; crop it to the part to inspect"
            )
        f = self.factor
        w2, h2 = max(f, round(w / f) * f), max(f, round(h / f) * f)
        if w2 * h2 > self.max_pixels:
            beta = math.sqrt(w * h / self.max_pixels)
            w2, h2 = max(f, math.floor(w / beta / f) * f), max(f, math.floor(h / beta / f) * f)
        elif w2 * h2 < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (w * h))
            w2, h2 = math.ceil(w * beta / f) * f, math.ceil(h * beta / f) * f
        return int(w2), int(h2)

    def apply(self, image: np.ndarray) -> Resized:
        """Resize a uint8 RGB image for the model (area filter down, cubic up) and record how."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            shape = getattr(image, "shape", None)
            raise ImageError(
                f"size policy needs a uint8 RGB HxWx3 array, got {type(image).__name__} {shape}; "
                "convert with differad_edge.images.to_rgb8"
            )
        src = image_size(image)
        dst = self.target_size(src)
        if dst == src:
            return Resized(image, PixelTransform.identity(), src)
        interp = cv2.INTER_AREA if dst[0] * dst[1] < src[0] * src[1] else cv2.INTER_CUBIC
        out = cv2.resize(image, dst, interpolation=interp)
        return Resized(np.ascontiguousarray(out), PixelTransform.resize(src, dst), src)
