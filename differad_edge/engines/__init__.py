"""Engine registry: names map to lazily imported classes, so a golden-only deployment never imports
torch or onnxruntime (and ``import differad_edge.engines`` not even OpenCV: ``GoldenConfig`` is
re-exported on first use)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import EngineError
from .base import Defect, Detection, Engine, EngineHandle, Reason, Reference, StageTimer, Verdict

if TYPE_CHECKING:
    from .configuration_golden import GoldenConfig

#: name -> "module:Class". Engines needing heavy packages import them inside their module only.
ENGINES: dict[str, str] = {
    "golden": "differad_edge.engines.golden:GoldenEngine",
    "vlm": "differad_edge.engines.vlm:VLMEngine",
    "onnx": "differad_edge.engines.onnx:OnnxEngine",
}


def engine_class(name: str) -> type[Engine]:
    try:
        target = ENGINES[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r}; known engines: {', '.join(sorted(ENGINES))}") from None
    module_name, cls_name = target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, cls_name)


def create_engine(name: str, **options: Any) -> Engine:
    """Build an engine by name; ``options`` go to its constructor (e.g. ``model=`` for vlm/onnx)."""
    return engine_class(name)(**options)


def __getattr__(name: str) -> Any:
    """``GoldenConfig`` on first use: its module imports OpenCV (via ``variation``)."""
    if name == "GoldenConfig":
        from .configuration_golden import GoldenConfig

        return GoldenConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENGINES",
    "Defect",
    "Detection",
    "Reason",
    "Verdict",
    "Engine",
    "EngineHandle",
    "GoldenConfig",
    "Reference",
    "StageTimer",
    "create_engine",
    "engine_class",
]
