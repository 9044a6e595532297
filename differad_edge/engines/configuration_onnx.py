"""``OnnxConfig``: the typed, immutable options of the ``onnx`` engine (``OnnxEngine.config_type``).

The size policy and prompt are not options here: they are the bundle's (its manifest), fixed at
export. Importing this module imports no onnxruntime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .configuration import check_fields, config_to_dict, option


@dataclass(frozen=True)
class OnnxConfig:
    """How the ``onnx`` engine runs an export bundle; the bundle itself is the engine's ``model``."""

    providers: tuple[str, ...] | None = option(
        None, "ONNX Runtime execution providers in order; None = CUDA (when onnxruntime-gpu has it), then CPU"
    )
    reference_cache: bool = option(True, "reuse the reference's prefix (vision features + KV cache) per target")
    max_new_tokens: int | None = option(
        None, "token limit of the answer; None = the bundle's generation limit", range=(1, 4096)
    )
    threads: int | None = option(None, "intra-op threads of ONNX Runtime; None or 0 = its default", range=(0, 256))
    max_cached_references: int = option(4, "reference prefixes kept in memory (LRU)", range=(1, 64))
    tensorrt_cache_dir: str | None = option(None, "engine cache folder of the TensorRT execution provider")
    io_binding: bool | None = option(None, "keep the decoder's KV cache in ONNX Runtime buffers; None = on")
    grammar: bool = option(True, "decode under the bundle's answer grammar: every answer is a valid box")
    lookahead: bool | None = option(
        None,
        "with the grammar: also run each candidate of the next decision (two decisions per pass, same tokens); "
        "None = on a GPU only (a CPU pass is compute-bound: more tokens per pass cost more than the passes saved)",
    )
    vision_plan: bool | None = option(
        None, "run the bundle's TensorRT vision plan: None = when it loads here, True = required, False = never"
    )

    def __post_init__(self) -> None:
        providers: Any = self.providers
        if providers is not None:
            if not isinstance(providers, (list, tuple)) or not all(isinstance(p, str) for p in providers):
                raise ConfigError(
                    f"onnx providers={providers!r} must be a list of provider names, e.g. "
                    "['CUDAExecutionProvider', 'CPUExecutionProvider']"
                )
            object.__setattr__(self, "providers", tuple(providers))
        if isinstance(self.tensorrt_cache_dir, os.PathLike):
            object.__setattr__(self, "tensorrt_cache_dir", os.fspath(self.tensorrt_cache_dir))
        check_fields(self, "onnx")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


__all__ = ["OnnxConfig"]
