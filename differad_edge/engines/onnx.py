"""Engine ``onnx``: runs a ``differad-export`` bundle with ONNX Runtime, no PyTorch needed.

Same pipeline as the ``vlm`` engine (size policy -> two-image prompt -> greedy answer -> the shared
``engines.vlm.detection_from_text`` for parsing and mapping to target pixels), with the reference
prefix cache: the reference's vision features and the decoder KV cache of the prompt up to the
target image are computed once per reference and reused for every target. The options are one
typed, immutable ``OnnxConfig`` (``configuration_onnx.py``); the per-reference state an ``OnnxHandle``.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..images import load_image
from ..lru import LRU
from ..onnxrt.bundle import Bundle, load_bundle
from ..onnxrt.runtime import BundleRunner, PrefixState
from ..vlm.size_policy import Resized, SizePolicy
from .base import Detection, Engine, EngineHandle, Reference, StageTimer, own_handle
from .configuration import make_config, refuse_fixed_changes
from .configuration_onnx import OnnxConfig
from .vlm import detection_from_text

ENGINE_NAME = "onnx"
#: Options read when the ONNX Runtime sessions are made: fixed once the engine runs.
_SESSION_OPTIONS = (
    "providers",
    "threads",
    "tensorrt_cache_dir",
    "io_binding",
    "grammar",
    "lookahead",
    "vision_plan",
)


@dataclass
class OnnxHandle(EngineHandle):
    """The reference as the onnx engine prepared it: resized by the bundle's size policy, its
    prefix state (None without the reference cache, or until first built) and ``prepare``'s time."""

    resized: Resized | None = None
    prefix: PrefixState | None = None
    prepare_ms: dict[str, float] = field(default_factory=dict)


class OnnxEngine(Engine):
    """ONNX bundle engine, options as an ``OnnxConfig`` or its fields as keywords. ``providers``
    defaults to CUDA (when onnxruntime-gpu has it) then CPU; the vision graph runs the bundle's
    TensorRT plan when it loads here (``vision_plan``: None = when possible, True = required, False =
    never), else the TensorRT EP (fp16) when onnxruntime offers it on a CUDA machine. ``io_binding``
    keeps the decoder's KV cache in ONNX Runtime buffers (default on). ``grammar`` decodes under the
    bundle's answer grammar (default on). A bundle whose export verification did not pass loads with
    a warning; every result notes ``bundle_verified``."""

    name = ENGINE_NAME
    config_type = OnnxConfig

    def __init__(self, model: str | os.PathLike | Bundle, config: OnnxConfig | None = None, **options: Any) -> None:
        cfg = make_config(OnnxConfig, ENGINE_NAME, config, options)  # checked before the bundle loads
        self.bundle = model if isinstance(model, Bundle) else load_bundle(Path(model))
        self.runner = BundleRunner(
            self.bundle,
            providers=cfg.providers,
            threads=cfg.threads,
            tensorrt_cache_dir=cfg.tensorrt_cache_dir or None,
            io_binding=cfg.io_binding,
            grammar=cfg.grammar,
            lookahead=cfg.lookahead,
            vision_plan=cfg.vision_plan,
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
        #: Benchmarks force fixed-length answers (as ``VLMEngine.min_new_tokens``); 0 = stop at ``</answer>``/EOS.
        self.min_new_tokens = 0
        self._prefixes: LRU[str, PrefixState] = LRU(cfg.max_cached_references)
        self.config = cfg

    @property
    def config(self) -> OnnxConfig:
        return self._config

    @config.setter
    def config(self, config: OnnxConfig) -> None:
        """Replace the options; those the ONNX Runtime sessions were made with stay fixed."""
        refuse_fixed_changes(
            getattr(self, "_config", None),
            config,
            _SESSION_OPTIONS,
            "are fixed when the ONNX Runtime sessions load; build a new OnnxEngine to change them",
        )
        if self._prefixes.capacity != config.max_cached_references:
            self._prefixes = LRU(config.max_cached_references)
        self._config = config

    # thin wrappers over the config: setting one replaces the config (re-validated)
    @property
    def reference_cache(self) -> bool:
        return self.config.reference_cache

    @reference_cache.setter
    def reference_cache(self, on: bool) -> None:
        self.config = replace(self.config, reference_cache=on)

    @property
    def max_new_tokens(self) -> int:
        return self.config.max_new_tokens or self.runner.max_new_tokens

    @max_new_tokens.setter
    def max_new_tokens(self, tokens: int | None) -> None:
        self.config = replace(self.config, max_new_tokens=tokens)

    @property
    def max_cached_references(self) -> int:
        return self.config.max_cached_references

    def prepare(self, reference: Reference) -> OnnxHandle:
        handle = OnnxHandle(reference, resized=self.size_policy.apply(load_image(reference.image)))
        if self.reference_cache:
            timer = StageTimer()
            handle.prefix = self._prefix(reference, _ref_image(handle), timer)
            handle.prepare_ms = dict(timer.ms)
        return handle

    def detect(self, handle: EngineHandle, target: np.ndarray) -> Detection:
        t0 = time.perf_counter()
        resized = self.size_policy.apply(load_image(target))
        prep_ms = (time.perf_counter() - t0) * 1000.0
        handle = _own(handle)
        ref_image = _ref_image(handle)
        prefix = handle.prefix if self.reference_cache else None
        if self.reference_cache and prefix is None:
            prefix = handle.prefix = self._prefix(handle.reference, ref_image, StageTimer())
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
        handle = _own(handle)
        prefix = handle.prefix if self.reference_cache else None
        ref_image = _ref_image(handle)
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
            "lookahead": self.runner.grammar_on and self.runner.lookahead,
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


def _own(handle: EngineHandle) -> OnnxHandle:
    return own_handle(handle, OnnxHandle, "onnx")


def _ref_image(handle: OnnxHandle) -> np.ndarray:
    assert handle.resized is not None  # prepare always resizes
    return handle.resized.image
