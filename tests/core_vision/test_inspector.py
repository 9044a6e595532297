"""Inspector pipeline: store -> alignment -> engine -> box mapped back to the camera frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from differad_edge.alignment import AlignConfig
from differad_edge.boxes import iou
from differad_edge.engines import Reference
from differad_edge.engines.golden import GoldenEngine
from differad_edge.errors import ConfigError, ReferenceError
from differad_edge.inspector import Inspector
from differad_edge.outcome import Reason, Verdict
from differad_edge.store import ReferenceStore

from .parts import draw_blob, good_copy, make_product, rigid, warp

SIZE = 256


class CountingGolden(GoldenEngine):
    """The real golden engine, counting how often per-reference work is done."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.prepared = 0

    def prepare(self, reference):
        self.prepared += 1
        return super().prepare(reference)


def _promote(store: ReferenceStore, pid: str, image: np.ndarray) -> str:
    v = store.add_version(pid, image)
    store.set_validation(pid, v, True, {"test": True})
    store.promote(pid, v)
    return v


@pytest.fixture
def store(tmp_path: Path) -> ReferenceStore:
    return ReferenceStore(tmp_path / "refs")


@pytest.mark.parametrize(("angle", "dx", "dy"), [(0.0, 9.0, -6.0), (4.0, -5.0, 3.0)])
def test_box_is_mapped_back_through_the_alignment_warp(store, angle, dx, dy):
    ref = make_product(SIZE, seed=0)
    version = _promote(store, "pump", ref)
    m = rigid(SIZE, angle, dx, dy)  # where the part sits in this camera frame
    frame = good_copy(warp(ref, m), np.random.default_rng(0), noise=2.0)
    gt = draw_blob(frame, (150, 110), 10, (10, 10, 10))  # the defect, in frame pixels

    inspector = Inspector(GoldenEngine(), store=store)
    result = inspector.inspect(frame, "pump")
    assert result.reference_version == version
    assert result.product_id == "pump"
    assert result.alignment is not None
    assert result.alignment.ok
    assert result.alignment.method == "ecc"
    assert result.anomaly
    assert iou(result.detection.box, gt) >= 0.6, (result.detection.box, gt)
    # without mapping back, the box would sit where the defect is in the *reference* frame
    unmapped = result.alignment.warp.apply_box(result.detection.box)
    assert iou(unmapped, gt) < iou(result.detection.box, gt) - 0.2
    assert {"reference", "align", "engine", "total", "engine.diff"} <= set(result.timings_ms)
    assert result.to_json()["box"] == result.detection.box.as_int_list()


def test_box_is_mapped_back_on_a_non_square_frame(store):
    """Width and height differ (320x200): a swapped axis anywhere in the warp chain would miss the box."""
    ref = np.ascontiguousarray(make_product(320, seed=3)[:200])
    _promote(store, "wide", ref)
    m = cv2.getRotationMatrix2D((159.5, 99.5), 3.0, 1.0)
    m[:, 2] += (-7.0, 4.0)
    frame = good_copy(warp(ref, m), np.random.default_rng(1), noise=2.0)
    gt = draw_blob(frame, (250, 60), 10, (10, 10, 10))

    result = Inspector(GoldenEngine(), store=store).inspect(frame, "wide")
    assert result.alignment.ok
    assert result.anomaly
    assert iou(result.detection.box, gt) >= 0.6, (result.detection.box, gt)
    assert result.detection.box.x2 <= 320
    assert result.detection.box.y2 <= 200


def test_good_moved_part_is_not_flagged(store):
    ref = make_product(SIZE, seed=1)
    _promote(store, "pump", ref)
    frame = good_copy(warp(ref, rigid(SIZE, 2.0, 6.0, 4.0)), np.random.default_rng(1), noise=2.0, brightness=10)
    result = Inspector(GoldenEngine(), store=store).inspect(frame, "pump")
    assert result.alignment.ok, result.detection.box
    assert not result.anomaly, result.detection.box


def test_new_promotion_and_rollback_are_picked_up(store):
    a, b = make_product(SIZE, seed=2), make_product(SIZE, seed=3)
    v1 = _promote(store, "pump", a)
    engine = CountingGolden()
    inspector = Inspector(engine, store=store, align=None)
    for _ in range(3):
        assert inspector.inspect(a, "pump").reference_version == v1
    assert engine.prepared == 1  # cached per (product, version)

    v2 = _promote(store, "pump", b)
    r = inspector.inspect(b, "pump")
    assert r.reference_version == v2
    assert not r.anomaly
    assert inspector.inspect(a, "pump").anomaly  # a is now wrong for this product
    assert engine.prepared == 2

    store.rollback("pump")
    assert inspector.inspect(a, "pump").reference_version == v1
    assert engine.prepared == 3


def test_warm_up_prepares_the_reference_once_and_finds_no_defect_in_it(store):
    ref = make_product(SIZE, seed=4)
    v1 = _promote(store, "pump", ref)
    engine = CountingGolden()
    inspector = Inspector(engine, store=store, align=None)
    warm = inspector.warm_up("pump")
    assert warm.reference_version == v1
    assert warm.detection.valid
    assert not warm.anomaly
    assert engine.prepared == 1
    frame = ref.copy()
    gt = draw_blob(frame, (70, 120), 10, (0, 0, 0))
    assert iou(inspector.inspect(frame, "pump").detection.box, gt) >= 0.5
    assert engine.prepared == 1  # the first frame reused the warm state
    with pytest.raises(ReferenceError, match="unknown product"):
        inspector.warm_up("ghost")
    with pytest.raises(ConfigError, match="ReferenceStore"):
        Inspector(GoldenEngine()).warm_up("pump")


def test_unknown_product_and_missing_store(store):
    inspector = Inspector(GoldenEngine(), store=store)
    result = inspector.inspect(make_product(64), "ghost")  # a stream must not die on it: NOT_INSPECTED
    assert result.verdict is Verdict.NOT_INSPECTED
    assert result.reason is Reason.NO_REFERENCE
    assert "unknown product" in result.detection.message
    with pytest.raises(ConfigError, match="ReferenceStore"):
        Inspector(GoldenEngine()).inspect(make_product(64), "pump")


def test_frame_size_mismatch(store):
    ref = make_product(128, seed=0)
    _promote(store, "pump", ref)
    big = np.kron(ref, np.ones((2, 2, 1), np.uint8))  # the same part at twice the resolution
    refused = Inspector(GoldenEngine(), store=store, align=None).inspect(big, "pump")
    assert refused.verdict is Verdict.NOT_INSPECTED
    assert refused.reason is Reason.SIZE_MISMATCH
    assert "enable alignment" in refused.detection.message
    frame = big.copy()
    gt = draw_blob(frame, (100, 140), 12, (0, 0, 0))
    result = Inspector(GoldenEngine(), store=store).inspect(frame, "pump")
    assert result.alignment.ok
    assert iou(result.detection.box, gt) >= 0.5


def test_alignment_failure_gives_an_invalid_detection(store):
    ref = make_product(SIZE, seed=0)
    _promote(store, "pump", ref)
    unrelated = make_product(SIZE, seed=50)
    result = Inspector(GoldenEngine(), store=store).inspect(unrelated, "pump")
    assert result.verdict is Verdict.NOT_INSPECTED
    assert result.detection.box is None
    assert result.reason is Reason.ALIGNMENT_FAILED
    anyway = Inspector(GoldenEngine(), store=store, on_align_failure="detect").inspect(unrelated, "pump")
    assert anyway.detection.valid
    assert anyway.anomaly


def test_inspect_pair_caches_by_reference_content():
    ref = make_product(SIZE, seed=5)
    engine = CountingGolden()
    inspector = Inspector(engine, align=AlignConfig(motion="translation"), cache_size=1)
    frame = warp(ref, rigid(SIZE, 0.0, 3.0, 0.0))
    gt = draw_blob(frame, (60, 190), 9, (250, 250, 250))
    for _ in range(2):
        result = inspector.inspect_pair(Reference(ref.copy()), frame)
        assert iou(result.detection.box, gt) >= 0.5
    assert engine.prepared == 1
    inspector.inspect_pair(Reference(make_product(SIZE, seed=6)), frame)
    inspector.inspect_pair(Reference(ref.copy()), frame)  # evicted (cache_size=1): prepared again
    assert engine.prepared == 3


def test_engine_by_name_and_bad_options():
    assert Inspector("golden").engine.name == "golden"
    with pytest.raises(ConfigError):
        Inspector("golden", on_align_failure="ignore")


def test_motion_stored_with_the_reference_is_used_and_residual_reported(store):
    """Calibration chooses the motion model and stores it; the live inspector registers with it."""
    ref = make_product(SIZE, seed=2)
    v = store.add_version("tilted", ref, metadata={"alignment": {"motion": "translation"}})
    store.set_validation("tilted", v, True, {"test": True})
    store.promote("tilted", v)
    frame = good_copy(warp(ref, rigid(SIZE, 0.0, 3.0, -2.0)), np.random.default_rng(3), noise=2.0)
    result = Inspector(GoldenEngine(), store=store).inspect(frame, "tilted")
    assert result.alignment.motion == "translation"
    assert result.alignment.ok
    js = result.to_json()["alignment"]
    assert js["motion"] == "translation"
    assert js["residual_px"] is not None
    assert js["residual_px"] < 0.5
    assert "warp" not in js
    assert 0.9 < js["coverage"] < 1.0
    plain = ReferenceStore(store.root.parent / "plain")
    _promote(plain, "tilted", ref)
    assert Inspector(GoldenEngine(), store=plain).inspect(frame, "tilted").alignment.motion == "homography"


def test_seam_of_a_moved_frame_is_not_a_defect(store):
    """The strip the moved frame does not cover is filled (or black): never judged."""
    ref = make_product(SIZE, seed=3)
    _promote(store, "seam", ref)
    m = rigid(SIZE, 1.0, 12.0, -8.0)
    frame = cv2.warpAffine(ref, m, (SIZE, SIZE), borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    frame = good_copy(frame, np.random.default_rng(4), noise=2.0)
    for fill in ("black", "reference"):
        result = Inspector(GoldenEngine(border=0), store=store, align=AlignConfig(fill=fill)).inspect(frame, "seam")
        assert result.alignment.ok
        assert result.alignment.valid is not None
        assert not result.anomaly, (fill, result.detection.box)
