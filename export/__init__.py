"""Edge bundles: ``differad-export`` turns a Qwen3-VL checkpoint into a verified bundle (ONNX graphs
at int4/int8/fp16/fp32 for ONNX Runtime, or a bitsandbytes checkpoint for the vlm engine)."""

from differad_edge.onnxrt.bundle import Bundle, load_bundle

from .agreement import Thresholds
from .config import ExportConfig
from .exporter import ExportResult, make_config, run_export

__all__ = ["Bundle", "ExportConfig", "ExportResult", "Thresholds", "load_bundle", "make_config", "run_export"]
