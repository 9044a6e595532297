"""Every calibration threshold in one typed config, so a YAML file and the CLI flags map onto the
same fields and are validated in one place."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from differad_edge.alignment import MOTIONS, Motion
from differad_edge.engines.configuration_golden import GoldenConfig
from differad_edge.errors import ConfigError
from differad_edge.variation import Brightness, VariationMethod


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GateConfig(_Strict):
    """Quality gates a captured frame must pass before it may shape a reference."""

    focus_min_ratio: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Laplacian variance must be at least this fraction of the set's median "
        "(a real lens's focus and motion blur vary by a factor 2 between good frames; a blurred one drops far lower)",
    )
    dark_level: int = Field(5, ge=0, le=254, description="gray level at or below which a pixel counts as clipped dark")
    bright_level: int = Field(
        250, ge=1, le=255, description="gray level at or above which a pixel counts as clipped bright"
    )
    max_dark_fraction: float = Field(
        0.12,
        ge=0,
        le=1,
        description="share of clipped-dark pixels always allowed (the limit is the larger of this "
        "and clip_ratio x the set's median share: a dark part has many dark pixels in every frame)",
    )
    max_bright_fraction: float = Field(
        0.1,
        ge=0,
        le=1,
        description="share of clipped-bright pixels always allowed (as max_dark_fraction; the inspector's "
        "photometric range, gain +/-12 % and offset +/-12 levels, clips up to 7 % of a white part in a good frame)",
    )
    clip_ratio: float = Field(
        3.0, ge=1, description="a frame may clip up to this many times the set's median share of dark / bright pixels"
    )
    station_min_corr: float = Field(
        0.6, ge=-1, le=1, description="normalized correlation to the set's median image below which the station changed"
    )
    station_tile_diff: float = Field(
        12.0,
        gt=0,
        description="mean gray-level difference of one tile to the anchor frame, after alignment with the "
        "inspector's motion model and the photometric fit (gain, offset, gradient), above which something (a hand, a "
        "tool) is in view: the station check is local, so a third of the part covered is caught",
    )
    tiles: int = Field(4, ge=1, le=16, description="the station check splits the frame into tiles x tiles")
    warn_shift_fraction: float = Field(
        0.02,
        gt=0,
        le=1,
        description="motion relative to the anchor, as a share of the image diagonal, above which "
        "a frame is kept with a warning (the aligner still registers it)",
    )
    max_shift_fraction: float = Field(
        0.08,
        gt=0,
        le=1,
        description="the inspector's alignment capture range as a share of the image diagonal: "
        "frames moved further are rejected (part not seated)",
    )
    max_shift_px: float | None = Field(
        None,
        gt=0,
        description="optional absolute cap on the motion (px, full resolution); default: only the capture range",
    )
    duplicate_max_diff: float = Field(
        0.5,
        ge=0,
        description="mean gray-level difference to one of the 3 previous frames below which a frame is a near-duplicate (warning)",
    )
    min_align_score: float = Field(
        0.8, ge=0, le=1, description="alignment (ECC correlation) score below which a frame is unstable"
    )
    analysis_side: int = Field(256, ge=32, le=4096, description="gates work on frames downscaled to this longest side")
    min_accepted: int = Field(3, ge=1, description="fewest accepted frames a reference may be built from")

    @model_validator(mode="after")
    def _levels(self) -> GateConfig:
        if self.dark_level >= self.bright_level:
            raise ValueError(f"dark_level ({self.dark_level}) must be below bright_level ({self.bright_level})")
        if self.warn_shift_fraction > self.max_shift_fraction:
            raise ValueError(
                f"warn_shift_fraction ({self.warn_shift_fraction}) must not exceed max_shift_fraction ({self.max_shift_fraction})"
            )
        return self


class AutoMaskConfig(_Strict):
    """Mask out pixels that vary too much between good parts (cables, reflections, loose labels)."""

    enabled: bool = False
    max_spread: float = Field(25.0, gt=0, description="per-pixel spread (gray levels) above which a pixel is ignored")
    dilate_px: int = Field(2, ge=0, le=64, description="grow the unstable region by this many pixels")


class BuildConfig(_Strict):
    """How accepted frames become a reference (center image + per-pixel spread + care mask)."""

    method: VariationMethod = VariationMethod.MEDIAN_MAD
    motion: Literal["auto"] | Motion = Field(
        "auto", description="alignment motion model; auto = the simplest model whose residual is near the best one's"
    )
    brightness: Brightness = Field(
        "local",
        description="lighting change removed from every frame before the variation model (as the golden engine does)",
    )
    auto_mask: AutoMaskConfig = Field(default_factory=AutoMaskConfig)
    max_frames: int = Field(50, ge=1, description="at most this many accepted frames are aligned and combined")

    @field_validator("motion", mode="before")
    @classmethod
    def _motion(cls, value: Any) -> Any:
        """One error naming every choice (not one per member of the ``"auto" | Motion`` union)."""
        if value != "auto" and value not in MOTIONS:
            names = [repr(m) for m in ("auto", *(m.value for m in Motion))]
            raise PydanticCustomError("literal_error", f"Input should be {', '.join(names[:-1])} or {names[-1]}")
        return value


#: validation grid -> the GoldenConfig field its values become
GRID_FIELDS = {"k_grid": "k", "abs_grid": "abs_threshold"}


class ValidateConfig(_Strict):
    """Acceptance criteria for a candidate and the threshold grid searched to meet them."""

    target_false_alarm_rate: float = Field(0.0, ge=0, le=1, description="largest share of good frames with an alarm")
    min_detection_rate: float = Field(0.8, ge=0, le=1, description="smallest share of known defects found (IoU >= iou)")
    iou: float = Field(0.3, gt=0, le=1, description="IoU with the ground-truth box for a defect to count as found")
    min_good_frames: int = Field(3, ge=1, description="fewest held-out good frames a validation may rest on")
    margin: float = Field(
        1.2, ge=1, le=4, description="the tightest passing k and abs threshold are multiplied by this before use"
    )
    k_grid: list[float] = Field(default_factory=lambda: [2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0])
    abs_grid: list[float] = Field(default_factory=lambda: [10.0, 15.0, 20.0, 30.0, 40.0])
    golden: dict[str, Any] = Field(default_factory=dict, description="fixed GoldenConfig overrides kept during tuning")
    max_report_frames: int = Field(24, ge=1, description="frames shown with images in the HTML report")

    @model_validator(mode="after")
    def _grids(self) -> ValidateConfig:
        # the chosen point x margin becomes GoldenConfig's k / abs_threshold: it must fit their range,
        # or a validation that passed would write a reference the engine refuses to load
        ranges = {
            f.name: f.metadata["range"] for f in dataclasses.fields(GoldenConfig) if f.name in GRID_FIELDS.values()
        }
        for name, field in GRID_FIELDS.items():
            grid = getattr(self, name)
            if not grid or any(v <= 0 for v in grid):
                raise ValueError(f"{name} must be a non-empty list of positive numbers, got {grid!r}")
            hi = ranges[field][1]
            if max(grid) * self.margin > hi:
                raise ValueError(
                    f"{name} {max(grid):g} x margin {self.margin:g} exceeds GoldenConfig.{field}'s maximum {hi:g}; "
                    f"keep {name} <= {hi / self.margin:g}"
                )
        return self


class CalibrationConfig(_Strict):
    gates: GateConfig = Field(default_factory=GateConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def make_config(cls: type[BaseModel], data: dict[str, Any] | None = None, source: str = "config") -> Any:
    """Build a config, turning pydantic's errors into one ``ConfigError`` that names field and fix."""
    try:
        return cls.model_validate(data or {})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid {source}: {problems} (fix the value or remove it to use the default)") from e


def load_config(path: str | Path | None) -> CalibrationConfig:
    """Read a calibration YAML (sections ``gates``, ``build``, ``validate``); defaults when ``path`` is None."""
    if path is None:
        return CalibrationConfig()
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(f"cannot read calibration config {p}: {e}; pass an existing YAML file") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"calibration config {p} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(
            f"calibration config {p} must be a mapping with gates/build/validate, got {type(data).__name__}"
        )
    return make_config(CalibrationConfig, data, source=f"calibration config {p}")
