"""The inspection pipeline: product id + camera frame -> active reference -> alignment -> engine ->
box mapped back to frame pixels.

Engines only ever see targets in the reference's pixel frame; this module owns the mapping back
(``alignment.warp.inverse()``), so every engine's box lands on the camera frame the same way.
Per-reference work (engine handle, reference pyramid) is cached per (product, version); the
store's active pointer is checked on every call (one small file), so a promotion or rollback
takes effect on the next frame without restarting anything.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .alignment import AlignConfig, Aligner, Alignment
from .engines import Detection, Engine, EngineHandle, Reference, create_engine
from .errors import ConfigError, ImageError, ReferenceError
from .images import image_size, to_rgb8
from .store import ReferenceStore

_DEFAULT_ALIGN = AlignConfig()


@dataclass
class Inspection:
    """One inspected frame. ``detection.box`` is in *frame* pixels (``None`` = no anomaly)."""

    detection: Detection
    product_id: str
    reference_version: str
    alignment: Alignment | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def anomaly(self) -> bool:
        return bool(self.detection.anomaly)

    def to_json(self) -> dict[str, Any]:
        out = self.detection.to_json()
        out["product_id"] = self.product_id
        out["reference_version"] = self.reference_version
        out["timings_ms"] = {k: round(v, 3) for k, v in self.timings_ms.items()}
        if self.alignment is not None:
            out["alignment"] = {k: v for k, v in self.alignment.to_json().items() if k != "warp"}
        return out


@dataclass
class _Prepared:
    reference: Reference
    handle: EngineHandle
    aligner: Aligner | None


class Inspector:
    """Runs frames through alignment and an engine against the right reference.

    ``on_align_failure``: ``"invalid"`` (default) returns an invalid detection (no box, reason says
    why) when the frame cannot be registered; ``"detect"`` runs the engine on the best warp anyway.
    ``cache_size`` bounds how many ad-hoc references (``inspect_pair``) keep their prepared state.
    """

    def __init__(
        self,
        engine: Engine | str,
        store: ReferenceStore | None = None,
        align: AlignConfig | None = _DEFAULT_ALIGN,
        *,
        on_align_failure: Literal["invalid", "detect"] = "invalid",
        cache_size: int = 8,
    ) -> None:
        if on_align_failure not in ("invalid", "detect"):
            raise ConfigError(f"on_align_failure={on_align_failure!r} must be 'invalid' or 'detect'")
        if cache_size < 1:
            raise ConfigError(f"cache_size={cache_size} must be >= 1")
        self._owns_engine = isinstance(engine, str)
        self.engine = create_engine(engine) if isinstance(engine, str) else engine
        self.store = store
        self.align_config = align
        self.on_align_failure = on_align_failure
        self._store_cache: dict[str, tuple[str, _Prepared]] = {}
        self._adhoc: OrderedDict[str, _Prepared] = OrderedDict()
        self._cache_size = cache_size

    # -- public -------------------------------------------------------------------------------
    def inspect(self, frame: np.ndarray, product_id: str) -> Inspection:
        """Inspect a frame (uint8 RGB) of ``product_id`` against its active reference in the store."""
        t0 = time.perf_counter()
        prepared = self._prepared(product_id)
        return self._run(prepared, frame, {"reference": (time.perf_counter() - t0) * 1000.0})

    def warm_up(self, product_id: str) -> Inspection:
        """Prepare ``product_id``'s active reference now and inspect its own image once.

        A stream's first frame otherwise pays for loading and preparing the reference and for the
        engine's first calls (about 200 ms for the golden engine at 800x800, more for a model), and a
        30 fps camera drops the frames behind it. The result is a self-check too: the reference
        image should come out without a defect.
        """
        t0 = time.perf_counter()
        prepared = self._prepared(product_id)
        return self._run(prepared, prepared.reference.image, {"reference": (time.perf_counter() - t0) * 1000.0})

    def inspect_pair(self, reference: Reference, frame: np.ndarray) -> Inspection:
        """Inspect a frame against a reference in hand (no store); prepared state cached by content."""
        t0 = time.perf_counter()
        key = reference.key
        prepared = self._adhoc.get(key)
        if prepared is None:
            prepared = self._prepare(reference)
            self._adhoc[key] = prepared
            while len(self._adhoc) > self._cache_size:
                self._adhoc.popitem(last=False)
        else:
            self._adhoc.move_to_end(key)
        return self._run(prepared, frame, {"reference": (time.perf_counter() - t0) * 1000.0})

    def close(self) -> None:
        """Drop cached state; closes the engine only if this inspector created it from a name."""
        self._store_cache.clear()
        self._adhoc.clear()
        if self._owns_engine:
            self.engine.close()

    # -- steps --------------------------------------------------------------------------------
    def _prepared(self, product_id: str) -> _Prepared:
        """The prepared state of ``product_id``'s active version, re-prepared when another is promoted."""
        if self.store is None:
            raise ConfigError(
                "inspecting a product id needs a ReferenceStore (Inspector(engine, store=...)); "
                "use inspect_pair for a reference in hand"
            )
        version = self.store.active_version(product_id)
        if version is None:
            self.store.load(product_id)  # raises the precise ReferenceError (unknown product / none active)
            raise ReferenceError(f"product {product_id!r} has no active reference version")
        cached = self._store_cache.get(product_id)
        if cached is None or cached[0] != version:
            cached = (version, self._prepare(self.store.load(product_id, version)))
            self._store_cache[product_id] = cached  # the older version's state is dropped here
        return cached[1]

    def _prepare(self, reference: Reference) -> _Prepared:
        aligner = Aligner(reference.image, self.align_config) if self.align_config is not None else None
        return _Prepared(reference, self.engine.prepare(reference), aligner)

    def _run(self, prepared: _Prepared, frame: np.ndarray, timings: dict[str, float]) -> Inspection:
        ref = prepared.reference
        t0 = time.perf_counter()
        frame = to_rgb8(frame)
        frame_size = image_size(frame)
        alignment: Alignment | None = None
        if prepared.aligner is not None:
            alignment = prepared.aligner.align(frame)
            target = alignment.aligned
        elif frame_size != ref.size:
            raise ImageError(
                f"frame is {frame_size[0]}x{frame_size[1]} but reference {ref.product_id}/{ref.version} is "
                f"{ref.size[0]}x{ref.size[1]}; enable alignment (align=AlignConfig()) or resize the frame"
            )
        else:
            target = frame
        timings["align"] = (time.perf_counter() - t0) * 1000.0

        if alignment is not None and not alignment.ok and self.on_align_failure == "invalid":
            detection = Detection(
                box=None,
                score=0.0,
                valid=False,
                engine=self.engine.name,
                reason=f"frame not inspected: {alignment.reason}",
            )
        else:
            t1 = time.perf_counter()
            detection = self.engine.detect(prepared.handle, target)
            timings["engine"] = (time.perf_counter() - t1) * 1000.0
            if detection.box is not None and not detection.box.is_zero and alignment is not None:
                box = alignment.warp.inverse().apply_box(detection.box, clip_to=frame_size)
                if box.is_degenerate:  # found only where the reference filled in for missing frame pixels
                    detection = dataclasses.replace(detection, box=None, reason="deviation lies outside the frame")
                else:
                    detection = dataclasses.replace(detection, box=box)
        timings.update({f"engine.{k}": v for k, v in detection.timings_ms.items()})
        timings["total"] = sum(v for k, v in timings.items() if "." not in k)
        return Inspection(detection, ref.product_id, ref.version, alignment, timings)


__all__ = ["Inspection", "Inspector"]
