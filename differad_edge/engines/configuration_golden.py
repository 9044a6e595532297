"""``GoldenConfig``: the typed, immutable options of the ``golden`` engine (``GoldenEngine.config_type``).

Every field carries its help text and range (:func:`~.configuration.option`), so the CLI
(``--engine-option``), the ROS node's ``golden.*`` parameters and Python keywords meet the same checks
(:func:`~.configuration.check_fields`) and read the same help. Every option may change on a running
engine (``dynamic``): none needs a reload. Importing this module imports no engine code.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError
from ..variation import Brightness, VariationMethod
from .configuration import check_fields, option


@dataclass(eq=False, frozen=True)  # may hold a mask array: compare configs via to_dict()
class GoldenConfig:
    """Thresholds of the golden-template engine (gray levels 0-255 unless said otherwise)."""

    abs_threshold: float = option(
        20.0, "smallest tolerated deviation anywhere (noise floor, gray levels)", range=(0.0, 255.0), dynamic=True
    )
    k: float = option(
        4.0, "tolerance in units of the variation model's per-pixel spread (sigma)", range=(0.0, 100.0), dynamic=True
    )
    bright_threshold: float | None = option(
        None, "replaces abs_threshold for brighter deviations; None = abs_threshold", range=(0.0, 255.0), dynamic=True
    )
    dark_threshold: float | None = option(
        None, "replaces abs_threshold for darker deviations; None = abs_threshold", range=(0.0, 255.0), dynamic=True
    )
    shift_px: float = option(
        1.0,
        "tolerated residual misalignment in pixels (tolerance += gradient * shift_px)",
        range=(0.0, 20.0),
        dynamic=True,
    )
    border: int = option(4, "pixels along the image edge that are never inspected", range=(0, 4096), dynamic=True)
    care_mask: np.ndarray | str | os.PathLike | None = dataclasses.field(
        default=None,
        repr=False,
        metadata={
            "help": "extra don't-care mask (array HxW or image path; non-zero = inspect), combined with the "
            "reference's own care mask",
            "range": None,
            "dynamic": True,
        },
    )
    blur: float = option(
        1.0, "Gaussian sigma applied to target and center before comparing (0 = off)", range=(0.0, 20.0), dynamic=True
    )
    hysteresis: float = option(
        0.7,
        "a deviating region grows over pixels beyond this share of the tolerance, if it holds one beyond the "
        "full tolerance (1 = off; above 0); keeps thin scratches whole",
        range=(0.0, 1.0),
        dynamic=True,
    )
    open_size: int = option(
        0,
        "opening kernel size (0 = off): drops specks, and thin scratches (off by default)",
        range=(0, 63),
        dynamic=True,
    )
    close_size: int = option(
        3, "closing kernel size (0 = off): joins the fragments of one defect", range=(0, 63), dynamic=True
    )
    merge_px: int = option(6, "deviating regions closer than this (px, >= 0) are one defect with one box", dynamic=True)
    min_area: int = option(25, "smallest defect in pixels (after merging)", range=(1, 1_000_000), dynamic=True)
    max_defects: int = option(8, "most defects reported per frame (highest scores first)", range=(1, 256), dynamic=True)
    anomaly_map: bool = option(
        False, "also return the per-pixel deviation / tolerance map (costs a full-frame pass)", dynamic=True
    )
    channels: Literal["gray", "rgb"] = option(
        "rgb",
        "compare each RGB channel (rgb: colour-only defects too) or luminance (gray, ~2x faster)",
        dynamic=True,
    )
    brightness: Brightness = option(
        "local",
        "lighting change removed before comparing, fitted robustly on the frame: local (gain + offset, varying "
        "across the image where a gradient shows), gain (global gain + offset), offset (global offset only) or none",
        dynamic=True,
    )
    method: VariationMethod = option(
        VariationMethod.MEDIAN_MAD,
        "variation method used by GoldenEngine.build_reference for several good images",
        dynamic=True,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # a numpy scalar (a computed threshold) counts as its Python value
            value = getattr(self, f.name)
            if isinstance(value, np.generic):
                object.__setattr__(self, f.name, value.item())
        if type(self.min_area) is int and self.min_area == 0:  # 0 = any size: the smallest defect is one pixel
            object.__setattr__(self, "min_area", 1)
        check_fields(self, "golden")
        if self.hysteresis <= 0:
            raise ConfigError(f"golden hysteresis={self.hysteresis!r} must be a number in (0, 1] (1 = off)")
        if self.merge_px < 0:
            raise ConfigError(f"golden merge_px={self.merge_px!r} must be an integer >= 0 (pixels)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["method"] = str(self.method)  # the plain name, as persisted and shown
        cm = d.pop("care_mask")
        d["care_mask"] = None if cm is None else (str(cm) if not isinstance(cm, np.ndarray) else "array")
        return d


__all__ = ["GoldenConfig"]
