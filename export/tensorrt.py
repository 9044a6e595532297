"""Optional TensorRT engine of the vision graph, built into the bundle on a GPU machine.

TensorRT engines are specific to a GPU model and TensorRT version, so they are built where they
will run; without ``tensorrt`` or a CUDA GPU the exporter records why it skipped this step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tensorrt_vision(vision_onnx: Path, out: Path, max_patches: int) -> dict[str, Any]:
    """Build an fp16 TensorRT engine of the vision graph when TensorRT and a CUDA GPU are present."""
    try:
        import tensorrt as trt
    except ImportError:
        return {"built": False, "reason": "tensorrt is not installed (pip install tensorrt on a CUDA machine)"}
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        return {"built": False, "reason": "no CUDA GPU is visible, TensorRT engines are built on the target GPU"}
    try:
        return _build(trt, vision_onnx, out, max_patches)
    except Exception as e:  # an optional accelerator must not fail the export; record why
        return {"built": False, "reason": f"TensorRT build failed: {type(e).__name__}: {e}"}


def _build(trt: Any, vision_onnx: Path, out: Path, max_patches: int) -> dict[str, Any]:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(vision_onnx)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        return {"built": False, "reason": f"TensorRT could not parse vision.onnx: {errs}"}
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        rest = tuple(inp.shape)[1:]
        lo, hi = (2, 3) if inp.name == "cu_seqlens" else (4, max_patches)
        profile.set_shape(inp.name, (lo, *rest), (hi, *rest), (hi, *rest))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        return {"built": False, "reason": "TensorRT engine build failed (see the TensorRT log above)"}
    out.write_bytes(bytes(plan))
    return {
        "built": True,
        "file": out.name,
        "precision": "fp16",
        "tensorrt": trt.__version__,
        "note": "engine is specific to this GPU model and TensorRT version",
    }
