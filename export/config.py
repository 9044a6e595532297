"""Export options, validated in one place (the CLI maps its flags onto this model)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .agreement import Thresholds

Quant = Literal["int4", "int8", "fp16", "fp32"]
Runtime = Literal["onnx", "torch"]


class ExportConfig(BaseModel):
    """One ``differad-export`` run."""

    model_config = ConfigDict(extra="forbid")

    model: Path = Field(description="source checkpoint folder (Qwen3-VL, safetensors)")
    out: Path = Field(description="bundle folder to create")
    quant: Quant = Field(description="int4 | int8 | fp16 | fp32")
    runtime: Runtime = Field("onnx", description="onnx (ONNX Runtime graphs) or torch (bitsandbytes checkpoint)")
    verify: Path | None = Field(
        None, description="pairs.jsonl to verify on; default: the model card's pairs, else synthetic pairs"
    )
    verify_count: int = Field(8, ge=1, le=10000, description="pairs to verify on")
    verify_size: int = Field(256, ge=32, le=4096, description="side of synthetic verify images (px)")
    budget_gb: float = Field(24.0, gt=0, description="refuse bundles whose memory estimate exceeds this (GiB)")
    block_size: int = Field(32, description="int4 MatMulNBits block size (power of two, 16..256)")
    fail_on_verify: bool = Field(True, description="fail the export when an agreement threshold is missed")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    max_new_tokens: int | None = Field(
        None, ge=1, le=4096, description="greedy answer length cap (default: the vlm engine's, 64 no-think / 512 think)"
    )
    max_pixels: int = Field(800 * 800, ge=1024, description="size policy: largest image the model sees (pixels)")
    vision_fp16: bool = Field(False, description="fp16 vision graph (GPU bundles; CPU keeps fp32)")
    grammar: bool = Field(True, description="store the answer grammar in the manifest and verify under it")
    overwrite: bool = Field(False, description="replace an existing bundle folder")
    seed: int = 0

    @field_validator("block_size")
    @classmethod
    def _block(cls, v: int) -> int:
        if v < 16 or v > 256 or v & (v - 1):
            raise ValueError(f"block size {v} must be a power of two between 16 and 256 (e.g. 32)")
        return v

    @model_validator(mode="after")
    def _combos(self) -> ExportConfig:
        if self.runtime == "torch" and self.quant == "int4" and self.block_size != 32:
            raise ValueError("--block-size applies to onnx int4 only (bitsandbytes nf4 uses its own blocks)")
        if self.out.resolve() == self.model.resolve():
            raise ValueError("--out must differ from --model (the bundle is a new folder)")
        return self
