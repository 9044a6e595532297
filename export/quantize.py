"""Post-export precision of the ONNX graphs with ``onnxruntime.quantization`` / ``onnxruntime.transformers``.

int4: MatMulNBits weight-only (symmetric, configurable block) - the weights dominate decoding on the
edge, activations stay float. int8: dynamic int8 MatMuls. fp16: weights and compute in fp16 with
fp32 graph inputs/outputs (``keep_io_types``), so the host code is the same for every bundle.
"""

from __future__ import annotations

import logging
from pathlib import Path

from differad_edge.errors import missing_extra

#: Graphs above this are saved with external data (protobuf's 2 GiB limit).
EXTERNAL_DATA_BYTES = 1_800_000_000


def _save(model: object, path: Path) -> None:
    import onnx

    big = onnx.ModelProto.ByteSize(model) > EXTERNAL_DATA_BYTES  # type: ignore[arg-type]
    onnx.save_model(model, str(path), save_as_external_data=big, location=f"{path.name}.data" if big else None)


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
            _save(q.model.model, dst)
        elif mode == "int8":
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        elif mode == "fp16":
            _save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), dst)
        else:
            raise ValueError(f"unknown precision {mode!r}")
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)
