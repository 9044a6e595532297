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
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..errors import EngineError
from ..outcome import Defect, Detection, Reason, Verdict
from ..reference import Reference

__all__ = ["Defect", "Detection", "Engine", "EngineHandle", "Reason", "Reference", "StageTimer", "Verdict"]


@dataclass
class EngineHandle:
    """Per-reference work an engine did in ``prepare``; opaque to callers. Each engine returns its
    own typed subclass (``GoldenHandle``, ``VLMHandle``, ``OnnxHandle``) holding that work as fields."""

    reference: Reference


H = TypeVar("H", bound=EngineHandle)


def own_handle(handle: EngineHandle, kind: type[H], engine: str) -> H:
    """``handle`` as ``engine``'s own typed handle; one prepared by another engine is refused (its
    fields would be read as this engine's), naming the fix."""
    if not isinstance(handle, kind):
        raise EngineError(
            f"the {engine} engine got a {type(handle).__name__} from another engine; prepare the reference "
            "with this engine (engine.prepare(reference))"
        )
    return handle


class Engine(abc.ABC):
    """Base class of every engine. Subclasses set ``name`` and are listed in ``engines.ENGINES``."""

    name: ClassVar[str] = ""
    #: The engine's typed, immutable options: a dataclass beside the engine whose fields the
    #: constructor also takes as keywords (``GoldenConfig``, ``VLMConfig``, ``OnnxConfig``). The CLI's
    #: ``--engine-option`` and the ROS node's nested parameters map onto it; every engine sets one.
    config_type: ClassVar[type | None] = None

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
