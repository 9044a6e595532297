"""The inspection pipeline: product id + camera frame -> active reference -> checks -> alignment ->
engine -> defects mapped back to frame pixels -> verdict.

Every frame ends in a verdict (``outcome.Verdict``): a frame that cannot be judged (unknown product,
wrong size, unusable image, not alignable, engine failure) is NOT_INSPECTED with its reason, never
an exception a stream would die on and never an empty answer that reads like a good part.

Engines only ever see targets in the reference's pixel frame; this module owns the mapping back
(``alignment.warp.inverse()``), so every engine's box lands on the camera frame the same way.
Per-reference work (engine handle, reference pyramid) is cached per (product, version); the
store's active pointer is checked on every call (one small file), so a promotion or rollback
takes effect on the next frame without restarting anything.
"""

from __future__ import annotations

import dataclasses
import inspect as pyinspect
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .alignment import AlignConfig, Aligner, Alignment, stored_motion
from .engines import Engine, EngineHandle, create_engine
from .errors import ConfigError, DifferadError, ImageError, ReferenceError
from .images import image_size, to_rgb8
from .lru import LRU
from .outcome import Detection, Reason, Verdict
from .quality import FrameStats, QualityLimits, content_weights, is_monochrome, quality_problem, to_gray_rgb
from .reference import Reference
from .store import ReferenceStore

_DEFAULT_ALIGN = AlignConfig()
_DEFAULT_QUALITY = QualityLimits()


@dataclass
class Inspection:
    """One inspected frame. ``detection.box`` is in *frame* pixels (``None`` = no anomaly)."""

    detection: Detection
    product_id: str
    reference_version: str
    alignment: Alignment | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        return self.detection.verdict

    @property
    def reason(self) -> Reason | None:
        return self.detection.not_inspected

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
    stats: FrameStats
    limits: QualityLimits
    content: np.ndarray  # where the reference has structure to inspect (weights of the coverage check)
    gray_handle: EngineHandle | None = None  # the reference in luminance, for mono frames (made on demand)


class Inspector:
    """Runs frames through alignment and an engine against the right reference.

    ``on_align_failure``: ``"invalid"`` (default) makes a frame that cannot be registered
    NOT_INSPECTED(alignment_failed); ``"detect"`` runs the engine on the best warp anyway.
    ``on_channel_mismatch``: a mono frame against a colour reference (or the reverse) is compared in
    luminance (``"gray"``, default; the result says so in ``notes``) or NOT_INSPECTED(channel_mismatch)
    (``"refuse"``). ``quality``: default limits of a usable frame (calibration may store tuned ones
    with the reference); ``None`` switches the check off.
    ``min_coverage``: smallest share of the reference the registered frame must cover; a cropped or
    zoomed frame (or a part partly out of view) is NOT_INSPECTED(partial_view), since the unseen rest
    would otherwise read as good.
    ``min_resolution``: the least linear resolution of the registered frame relative to the
    reference's; a frame with fewer pixels is NOT_INSPECTED(size_mismatch): it cannot show the detail
    the reference has, and upsampled onto it its blur reads as defects (measured on 7 skimage photos:
    no false alarm down to 0.55x, false alarms on 3 at 0.5x).
    ``cache_size`` bounds how many ad-hoc references (``inspect_pair``) keep their prepared state.
    """

    def __init__(
        self,
        engine: Engine | str,
        store: ReferenceStore | None = None,
        align: AlignConfig | None = _DEFAULT_ALIGN,
        *,
        on_align_failure: Literal["invalid", "detect"] = "invalid",
        on_channel_mismatch: Literal["gray", "refuse"] = "gray",
        quality: QualityLimits | None = _DEFAULT_QUALITY,
        min_coverage: float = 0.9,
        min_resolution: float = 0.6,
        cache_size: int = 8,
    ) -> None:
        if not 0.0 <= min_coverage <= 1.0:
            raise ConfigError(f"min_coverage={min_coverage!r} must lie in [0, 1] (a share of the reference)")
        if not 0.0 <= min_resolution <= 1.0:
            raise ConfigError(f"min_resolution={min_resolution!r} must lie in [0, 1] (frame vs reference pixels)")
        if on_align_failure not in ("invalid", "detect"):
            raise ConfigError(f"on_align_failure={on_align_failure!r} must be 'invalid' or 'detect'")
        if on_channel_mismatch not in ("gray", "refuse"):
            raise ConfigError(f"on_channel_mismatch={on_channel_mismatch!r} must be 'gray' or 'refuse'")
        if cache_size < 1:
            raise ConfigError(f"cache_size={cache_size} must be >= 1")
        self._owns_engine = isinstance(engine, str)
        self.engine = create_engine(engine) if isinstance(engine, str) else engine
        # engines that accept the alignment's validity mask are not asked to judge the warp seam
        self._takes_valid = "valid" in pyinspect.signature(self.engine.detect).parameters
        self.store = store
        self.align_config = align
        self.on_align_failure = on_align_failure
        self.on_channel_mismatch = on_channel_mismatch
        self.quality = quality
        self.min_coverage = min_coverage
        self.min_resolution = min_resolution
        self._store_cache: dict[str, tuple[str, _Prepared]] = {}
        self._adhoc: LRU[str, _Prepared] = LRU(cache_size)

    # -- public -------------------------------------------------------------------------------
    def inspect(self, frame: np.ndarray, product_id: str, version: str | None = None) -> Inspection:
        """Inspect a frame of ``product_id`` against its active reference in the store (or ``version``).

        An unknown product or version, or a store that cannot be read, gives NOT_INSPECTED(no_reference).
        """
        t0 = time.perf_counter()
        try:
            prepared = self._prepared(product_id, version)
        except ReferenceError as e:
            detection = Detection.refuse(Reason.NO_REFERENCE, str(e), engine=self.engine.name)
            return Inspection(
                detection, product_id, version or "", None, {"total": (time.perf_counter() - t0) * 1000.0}
            )
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
        prepared = self._adhoc.get_or_make(key, lambda: self._prepare(reference))
        return self._run(prepared, frame, {"reference": (time.perf_counter() - t0) * 1000.0})

    def close(self) -> None:
        """Drop cached state; closes the engine only if this inspector created it from a name."""
        self._store_cache.clear()
        self._adhoc.clear()
        if self._owns_engine:
            self.engine.close()

    # -- steps --------------------------------------------------------------------------------
    def _prepared(self, product_id: str, pinned: str | None = None) -> _Prepared:
        """The prepared state of ``product_id``'s active version (or the ``pinned`` one), re-prepared
        when another is promoted."""
        if self.store is None:
            raise ConfigError(
                "inspecting a product id needs a ReferenceStore (Inspector(engine, store=...)); "
                "use inspect_pair for a reference in hand"
            )
        if pinned is not None:
            key = f"{product_id}@{pinned}"
            cached = self._store_cache.get(key)
            if cached is None:
                cached = (pinned, self._prepare(self.store.load(product_id, pinned)))
                self._store_cache[key] = cached
            return cached[1]
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
        aligner = None
        if self.align_config is not None:
            # the motion model calibration chose (and validated the reference with) wins: it fits this station
            stored = stored_motion(reference.metadata)
            config = self.align_config if stored is None else dataclasses.replace(self.align_config, motion=stored)
            aligner = Aligner(reference.image, config)
        limits = QualityLimits.from_metadata(reference.metadata, self.quality or _DEFAULT_QUALITY)
        image = to_rgb8(reference.image)
        stats = FrameStats.of(image, limits)
        content = content_weights(image, reference.care_mask)
        return _Prepared(reference, self.engine.prepare(reference), aligner, stats, limits, content)

    def _gray_handle(self, prepared: _Prepared) -> EngineHandle:
        """The engine prepared on the reference in luminance: a mono frame then meets a reference
        that carries no colour it could not have seen (a coloured label would be a false alarm)."""
        if prepared.gray_handle is None:
            ref = prepared.reference
            gray = dataclasses.replace(
                ref,
                image=to_gray_rgb(to_rgb8(ref.image)),
                mean=None if ref.mean is None else to_gray_rgb(ref.mean),
                spread=None if ref.spread is None else to_gray_rgb(ref.spread),
                sha256="",
            )
            prepared.gray_handle = self.engine.prepare(gray)
        return prepared.gray_handle

    def _checks(self, prepared: _Prepared, frame: np.ndarray) -> tuple[Detection | None, bool, list[str]]:
        """Checks before judging: (a NOT_INSPECTED detection or None, compare in gray?, notes)."""
        ref = prepared.reference
        name = self.engine.name
        if self.align_config is None and image_size(frame) != ref.size:
            w, h = image_size(frame)
            return (
                Detection.refuse(
                    Reason.SIZE_MISMATCH,
                    f"frame is {w}x{h} but reference {ref.product_id}/{ref.version} is {ref.size[0]}x{ref.size[1]}; "
                    "enable alignment or resize the frame",
                    engine=name,
                ),
                False,
                [],
            )
        if self.quality is None:  # only the channel layout is needed: skip the full measures
            mono, stats = is_monochrome(frame), None
        else:
            stats = FrameStats.of(frame, prepared.limits)
            mono = stats.monochrome
        if stats is not None:
            problem = quality_problem(stats, prepared.stats, prepared.limits)
            if problem is not None:
                return Detection.refuse(Reason.IMAGE_QUALITY, problem, engine=name), False, []
        if mono == prepared.stats.monochrome:
            return None, False, []
        what = "mono frame against a colour reference" if mono else "colour frame against a mono reference"
        if self.on_channel_mismatch == "refuse":
            return (
                Detection.refuse(
                    Reason.CHANNEL_MISMATCH,
                    f"{what}; register a reference with this camera or allow gray comparison",
                    engine=name,
                ),
                False,
                [],
            )
        return None, True, [f"channel_mismatch: {what}, compared in luminance"]

    def _run(self, prepared: _Prepared, frame: np.ndarray, timings: dict[str, float]) -> Inspection:
        ref = prepared.reference
        t0 = time.perf_counter()
        try:
            frame = to_rgb8(frame)
        except ImageError as e:
            return self._finish(
                prepared, Detection.refuse(Reason.BAD_FRAME, str(e), engine=self.engine.name), None, timings
            )
        refused, in_gray, notes = self._checks(prepared, frame)
        timings["checks"] = (time.perf_counter() - t0) * 1000.0
        if refused is not None:
            return self._finish(prepared, refused, None, timings)
        if in_gray:
            frame = to_gray_rgb(frame)
        handle = self._gray_handle(prepared) if in_gray else prepared.handle
        frame_size = image_size(frame)
        t0 = time.perf_counter()
        alignment: Alignment | None = None
        target = frame
        if prepared.aligner is not None:
            alignment = prepared.aligner.align(frame)
            target = alignment.aligned
        timings["align"] = (time.perf_counter() - t0) * 1000.0
        if alignment is not None and not alignment.ok and self.on_align_failure == "invalid":
            detection = Detection.refuse(
                Reason.ALIGNMENT_FAILED,
                f"frame cannot be registered onto reference {ref.product_id}/{ref.version}: {alignment.reason} "
                "(wrong or missing part, moved camera or fixture)",
                engine=self.engine.name,
            )
            return self._finish(prepared, detection, alignment, timings)
        if alignment is not None and self.min_coverage > 0:
            coverage = alignment.covered_share(frame_size, ref.size, prepared.content)
            if coverage < self.min_coverage:
                detection = Detection.refuse(
                    Reason.PARTIAL_VIEW,
                    f"the frame covers only {coverage:.0%} of what reference {ref.product_id}/{ref.version} shows "
                    f"(limit {self.min_coverage:.0%}): cropped or zoomed frame, or the part is partly out of view",
                    engine=self.engine.name,
                )
                return self._finish(prepared, detection, alignment, timings)
        if alignment is not None and (resolution := alignment.resolution(frame_size)) < self.min_resolution:
            detection = Detection.refuse(
                Reason.SIZE_MISMATCH,
                f"the frame has {resolution:.2f}x the resolution of reference {ref.product_id}/{ref.version} "
                f"(limit {self.min_resolution:.2f}x): it cannot show the reference's detail, and upsampled its "
                "blur would read as defects (camera farther from the part, another camera, binning or a "
                "downscaled stream); capture at the reference's resolution or register a reference with this camera",
                engine=self.engine.name,
            )
            return self._finish(prepared, detection, alignment, timings)
        t1 = time.perf_counter()
        try:
            if alignment is not None and alignment.valid is not None and self._takes_valid:
                detection = self.engine.detect(handle, target, valid=alignment.valid)  # type: ignore[call-arg]
            else:
                detection = self.engine.detect(handle, target)
        except (DifferadError, Exception) as e:  # one frame's failure must not stop a stream
            detection = Detection.refuse(
                Reason.ENGINE_ERROR,
                f"engine {self.engine.name!r} failed: {type(e).__name__}: {e}",
                engine=self.engine.name,
            )
        timings["engine"] = (time.perf_counter() - t1) * 1000.0
        if alignment is not None and detection.defects:
            detection = self._to_frame(detection, alignment, frame_size)
        if notes:
            detection.notes = notes + detection.notes
        return self._finish(prepared, detection, alignment, timings)

    @staticmethod
    def _to_frame(detection: Detection, alignment: Alignment, frame_size: tuple[int, int]) -> Detection:
        """Defects from reference pixels to frame pixels; one found only where the reference filled in
        for missing frame pixels is dropped (and noted)."""
        inverse = alignment.warp.inverse()
        identity = alignment.warp.is_identity  # not the method: a frame of another size is resized
        kept = []
        for d in detection.defects:
            box = inverse.apply_box(d.box, clip_to=frame_size)
            if box.is_degenerate:
                continue
            kept.append(d if identity else dataclasses.replace(d, box=box, mask=None))
        notes = list(detection.notes)
        if len(kept) < len(detection.defects):
            notes.append(f"{len(detection.defects) - len(kept)} deviation(s) outside the frame dropped")
        anomaly_map = detection.anomaly_map
        if anomaly_map is not None and not identity:
            anomaly_map = alignment.to_frame(anomaly_map, frame_size)
        return dataclasses.replace(detection, defects=kept, notes=notes, anomaly_map=anomaly_map)

    def _finish(
        self, prepared: _Prepared, detection: Detection, alignment: Alignment | None, timings: dict[str, float]
    ) -> Inspection:
        timings.update({f"engine.{k}": v for k, v in detection.timings_ms.items()})
        timings["total"] = sum(v for k, v in timings.items() if "." not in k)
        ref = prepared.reference
        return Inspection(detection, ref.product_id, ref.version, alignment, timings)


__all__ = ["Inspection", "Inspector"]
