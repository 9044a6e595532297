"""Post-export precision of the ONNX graphs with ``onnxruntime.quantization`` / ``onnxruntime.transformers``.

int4: MatMulNBits weight-only (symmetric, configurable block) - the weights dominate decoding on the
edge, activations stay float. int8: dynamic int8 MatMuls. fp16: weights and compute in fp16 with
fp32 graph inputs/outputs (``keep_io_types``), so the host code is the same for every bundle.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from differad_edge.errors import missing_extra

#: Graphs above this are saved with external data (protobuf's 2 GiB limit).
EXTERNAL_DATA_BYTES = 1_800_000_000


def _weights_bytes(model: Any) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def save_graph(model: Any, path: Path) -> None:
    """Save a graph as one file, or with one ``<name>.data`` file above protobuf's 2 GiB limit."""
    import onnx

    big = _weights_bytes(model) > EXTERNAL_DATA_BYTES
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=big,
        all_tensors_to_one_file=True,
        location=f"{path.name}.data" if big else None,
    )


def consolidate(src: Path, dst: Path) -> None:
    """Re-save an exported graph: torch writes one file per tensor for >2 GiB models."""
    import onnx

    save_graph(onnx.load(str(src)), dst)


def quantize_graph(src: Path, dst: Path, mode: str, block_size: int = 32) -> None:
    """Write ``src`` at precision ``mode`` (int4 | int8 | fp16) to ``dst``."""
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as e:
        raise missing_extra(e.name or "onnxruntime", "export") from e
    quiet = [logging.getLogger(), logging.getLogger("onnxruntime.quantization")]  # the quantizers log INFO on root
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.WARNING)
    try:
        if mode == "int4":
            q = MatMulNBitsQuantizer(onnx.load(str(src)), block_size=block_size, is_symmetric=True)
            q.process()
            save_graph(q.model.model, dst)
        elif mode == "int8":
            big = sum(f.stat().st_size for f in src.parent.iterdir() if f.is_file()) > EXTERNAL_DATA_BYTES
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, use_external_data_format=big)
        elif mode == "fp16":
            save_graph(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), dst)
        else:
            raise ValueError(f"unknown precision {mode!r}")
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)
