"""Engine ``onnx``: runs a ``differad-export`` bundle with ONNX Runtime, no PyTorch needed.

Same pipeline as the ``vlm`` engine (size policy -> two-image prompt -> greedy answer -> the shared
``engines.vlm.detection_from_text`` for parsing and mapping to target pixels), with the reference
prefix cache: the reference's vision features and the decoder KV cache of the prompt up to the
target image are computed once per reference and reused for every target.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..images import load_image
from ..lru import LRU
from ..onnxrt.bundle import Bundle, load_bundle
from ..onnxrt.runtime import BundleRunner, PrefixState
from ..vlm.size_policy import SizePolicy
from .base import Detection, Engine, EngineHandle, Reference, StageTimer
from .vlm import detection_from_text

ENGINE_NAME = "onnx"


class OnnxEngine(Engine):
    """ONNX bundle engine. ``providers`` defaults to CUDA (when onnxruntime-gpu has it) then CPU; the
    vision graph runs the bundle's TensorRT plan when it loads here (``vision_plan``: None = when
    possible, True = required, False = never), else the TensorRT EP (fp16) when onnxruntime offers it
    on a CUDA machine. ``io_binding`` keeps the decoder's KV cache in ONNX Runtime buffers (default on).
    ``grammar`` decodes under the bundle's answer grammar (default on). A bundle whose export
    verification did not pass loads with a warning; every result notes ``bundle_verified``."""

    name = ENGINE_NAME

    def __init__(
        self,
        model: str | os.PathLike | Bundle,
        providers: Sequence[str] | None = None,
        reference_cache: bool = True,
        max_new_tokens: int | None = None,
        threads: int | None = None,
        max_cached_references: int = 4,
        tensorrt_cache_dir: str | os.PathLike | None = None,
        io_binding: bool | None = None,
        grammar: bool = True,
        vision_plan: bool | None = None,
    ) -> None:
        if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
            raise ConfigError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if max_cached_references < 1:
            raise ConfigError(f"max_cached_references must be >= 1, got {max_cached_references}")
        self.bundle = model if isinstance(model, Bundle) else load_bundle(Path(model))
        self.runner = BundleRunner(
            self.bundle,
            providers=providers,
            threads=threads,
            tensorrt_cache_dir=str(tensorrt_cache_dir) if tensorrt_cache_dir else None,
            io_binding=io_binding,
            grammar=grammar,
            vision_plan=vision_plan,
        )
        ver = self.bundle.manifest.get("verification") or {}
        self.bundle_verified = ver.get("passed") is True
        if not self.bundle_verified:
            why = "; ".join(ver.get("failures") or []) or "no passed verification recorded"
            warnings.warn(
                f"bundle {self.bundle.root} did not pass export verification ({why}): its answers may "
                "differ from the source model's; re-export it or check it with differad-export --check",
                UserWarning,
                stacklevel=2,
            )
        self.size_policy = SizePolicy(**self.bundle.manifest["size_policy"])
        self.reference_cache = bool(reference_cache)
        self.max_new_tokens = max_new_tokens or self.runner.max_new_tokens
        self.max_cached_references = int(max_cached_references)
        #: Benchmarks force fixed-length answers (as ``VLMEngine.min_new_tokens``); 0 = stop at ``</answer>``/EOS.
        self.min_new_tokens = 0
        self._prefixes: LRU[str, PrefixState] = LRU(self.max_cached_references)

    def prepare(self, reference: Reference) -> EngineHandle:
        handle = EngineHandle(reference)
        handle.state["resized"] = self.size_policy.apply(load_image(reference.image))
        if self.reference_cache:
            timer = StageTimer()
            handle.state["prefix"] = self._prefix(reference, handle.state["resized"].image, timer)
            handle.state["prepare_ms"] = dict(timer.ms)
        return handle

    def detect(self, handle: EngineHandle, target: np.ndarray) -> Detection:
        t0 = time.perf_counter()
        resized = self.size_policy.apply(load_image(target))
        prep_ms = (time.perf_counter() - t0) * 1000.0
        ref_image = handle.state["resized"].image
        prefix = handle.state.get("prefix") if self.reference_cache else None
        if self.reference_cache and prefix is None:
            prefix = handle.state["prefix"] = self._prefix(handle.reference, ref_image, StageTimer())
        gen = self.runner.generate(
            resized.image,
            prefix=prefix,
            reference=None if prefix else ref_image,
            max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens,
        )
        t1 = time.perf_counter()
        det = detection_from_text(gen.text, resized, gen.score)
        det.engine = ENGINE_NAME
        det.notes.append(f"bundle_verified={str(self.bundle_verified).lower()}")
        if self.runner.grammar_on and not self.min_new_tokens:
            det.notes.append(f"answer grammar: {gen.forward_passes} forward passes, {gen.forced} forced tokens")
        det.timings_ms = {"preprocess": prep_ms, **gen.timings_ms, "parse": (time.perf_counter() - t1) * 1000.0}
        det.timings_ms["total"] = sum(det.timings_ms.values())
        return det

    def tokens(self, handle: EngineHandle, target: np.ndarray) -> list[int]:
        """Raw greedy tokens for one target (parity tests against the vlm engine)."""
        resized = self.size_policy.apply(load_image(target))
        prefix = handle.state.get("prefix") if self.reference_cache else None
        ref_image = handle.state["resized"].image
        return self.runner.generate(
            resized.image, prefix=prefix, reference=None if prefix else ref_image, max_new_tokens=self.max_new_tokens
        ).tokens

    def describe(self) -> dict[str, Any]:
        m = self.bundle.manifest
        return {
            "engine": self.name,
            "bundle": str(self.bundle.root),
            "quantization": m["quantization"]["mode"],
            "source_sha256": m.get("source", {}).get("sha256"),
            "template": m["prompt"]["template_id"],
            "providers": self.runner.providers,
            "vision_providers": [p if isinstance(p, str) else p[0] for p in self.runner.vision_providers],
            "size_policy": self.size_policy.key,
            "reference_cache": self.reference_cache,
            "max_new_tokens": self.max_new_tokens,
            "bundle_verified": self.bundle_verified,
            "grammar": self.runner.grammar_spec.to_dict() if self.runner.grammar_on else None,
            "grammar_source": self.runner.grammar_source,
            "vision_backend": self.runner.vision_backend,
            "vision_note": self.runner.vision_note,
            "io_binding": self.runner.io_binding,
        }

    def close(self) -> None:
        self._prefixes.clear()

    def _prefix(self, reference: Reference, image: np.ndarray, timer: StageTimer) -> PrefixState:
        """Per-reference prefix, shared across handles of the same content (LRU of a few references)."""
        key = f"{reference.key}:{self.size_policy.key}"
        return self._prefixes.get_or_make(key, lambda: self.runner.prefix(image, timer))
