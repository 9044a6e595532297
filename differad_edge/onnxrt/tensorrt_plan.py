"""Run the bundle's TensorRT vision engine (``vision_fp16.plan``) without PyTorch.

The exporter builds the plan on the target GPU (``export/tensorrt.py``); this loads it with the
``tensorrt`` runtime and uses ONNX Runtime's CUDA ``OrtValue`` buffers as device memory, so the
onnx engine needs no torch or CUDA Python binding for it. A plan is tied to a GPU model and
TensorRT version: any failure to deserialize raises, and the runner falls back to ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError

VISION_OUTPUTS = ("image_embeds", "deepstack")


class TensorRTVision:
    """A deserialized TensorRT vision engine with the vision graph's inputs and outputs."""

    def __init__(self, plan: str | Path, device_id: int = 0) -> None:
        import tensorrt as trt
        from onnxruntime import OrtValue  # noqa: F401  (device buffers; fails early without onnxruntime)

        self.trt, self.device_id = trt, int(device_id)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(plan).read_bytes())
        if self.engine is None:
            raise RuntimeError(
                f"TensorRT could not deserialize {Path(plan).name} (built for another GPU or "
                f"TensorRT version; this is TensorRT {trt.__version__})"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in VISION_OUTPUTS if n in names]
        if len(self.outputs) != len(VISION_OUTPUTS):
            raise RuntimeError(f"TensorRT plan outputs {names} lack {VISION_OUTPUTS}; re-export the bundle")

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """(image_embeds, deepstack) for one image's host inputs (as the ONNX vision graph's ``run``)."""
        from onnxruntime import OrtValue

        trt, ctx = self.trt, self.context
        keep: list[Any] = []
        for name in self.inputs:
            arr = np.ascontiguousarray(feed[name], dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            dev = OrtValue.ortvalue_from_numpy(arr, "cuda", self.device_id)
            keep.append(dev)
            ctx.set_input_shape(name, arr.shape)
            ctx.set_tensor_address(name, dev.data_ptr())
        outs = []
        for name in self.outputs:
            shape = [int(d) for d in ctx.get_tensor_shape(name)]
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            dev = OrtValue.ortvalue_from_shape_and_type(shape, dtype, "cuda", self.device_id)
            ctx.set_tensor_address(name, dev.data_ptr())
            outs.append(dev)
        if not ctx.execute_async_v3(0):  # the legacy default stream: the copies below wait for it
            raise EngineError("TensorRT vision engine failed to run; check device memory and the input image")
        return [o.numpy().astype(np.float32) for o in outs]
