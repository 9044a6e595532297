"""The engine protocol every detector honours (golden template, VLM, ONNX bundle).

``prepare(reference)`` does the per-reference work once (variation model, reference prefix cache);
``detect(handle, target)`` runs per frame on a target already in the reference's pixel frame and
returns a box in *those* pixels. The inspector pipeline maps it back to the camera frame.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..boxes import Box


@dataclass
class Reference:
    """A registered good image of a product (plus what calibration learned about it).

    ``image`` is uint8 RGB. ``mean``/``spread`` are the per-pixel variation model (float32, HxWxC or
    HxW) built from several aligned good parts; ``care_mask`` is uint8 HxW, non-zero = inspect.
    """

    image: np.ndarray
    product_id: str = "adhoc"
    version: str = "0"
    care_mask: np.ndarray | None = None
    mean: np.ndarray | None = None
    spread: np.ndarray | None = None
    sha256: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def key(self) -> str:
        """Identity of the reference content, for caches (falls back to a content hash)."""
        if not self.sha256:
            from ..fileio import sha256_bytes

            self.sha256 = sha256_bytes(np.ascontiguousarray(self.image).tobytes())
        return self.sha256


@dataclass
class Detection:
    """One engine answer. ``box`` is in target pixels, ``None`` means no anomaly (or invalid)."""

    box: Box | None
    score: float
    valid: bool = True
    engine: str = ""
    text: str | None = None
    reason: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def anomaly(self) -> bool:
        return self.valid and self.box is not None and not self.box.is_zero

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "anomaly": self.anomaly,
            "box": self.box.as_int_list() if self.anomaly and self.box is not None else None,
            "score": round(float(self.score), 6),
            "valid": self.valid,
            "engine": self.engine,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }
        if self.text is not None:
            out["text"] = self.text
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass
class EngineHandle:
    """Per-reference state an engine precomputed in ``prepare``; opaque to callers."""

    reference: Reference
    state: dict[str, Any] = field(default_factory=dict)


class Engine(abc.ABC):
    """Base class of every engine. Subclasses set ``name`` and register with ``@register_engine``."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def prepare(self, reference: Reference) -> EngineHandle:
        """Do the per-reference work once; the handle is reused for every target."""

    @abc.abstractmethod
    def detect(self, handle: EngineHandle, target: np.ndarray) -> Detection:
        """Inspect one uint8 RGB target in the reference's pixel frame. Never raises on model output."""

    def detect_batch(self, handle: EngineHandle, targets: Sequence[np.ndarray]) -> list[Detection]:
        """Several targets against one reference; engines that can batch override this."""
        return [self.detect(handle, t) for t in targets]

    def describe(self) -> dict[str, Any]:
        """What a report or diagnostics message should say about this engine."""
        return {"engine": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook, engines without resources need nothing
        """Release models/sessions. Safe to call twice."""


class StageTimer:
    """Collects per-stage wall times in milliseconds (``with timer("vision"): ...``)."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - t0) * 1000.0
