"""Torch-free runtime pieces of an ONNX edge bundle: the bundle manifest and checksums, Qwen3-VL image
preprocessing and position ids in numpy, and the ONNX Runtime sessions with the reference prefix cache.

Nothing here imports torch or transformers, so a deployment runs with ``onnxruntime`` + ``tokenizers``.
"""

from .bundle import BUNDLE_FORMAT_VERSION, MANIFEST_NAME, Bundle, load_bundle

__all__ = ["BUNDLE_FORMAT_VERSION", "MANIFEST_NAME", "Bundle", "load_bundle"]
