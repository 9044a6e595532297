"""Thresholds tuned by calibration travel with a validated reference into the golden engine."""

from __future__ import annotations

import numpy as np

from differad_edge.engines.golden import TUNED_KEY, GoldenConfig, GoldenEngine
from differad_edge.store import ReferenceStore

from .parts import draw_blob


def _store_with_validated(tmp_path, product: np.ndarray, tuned: dict) -> ReferenceStore:
    store = ReferenceStore(tmp_path / "refs")
    v = store.add_version("part", product)
    store.set_validation("part", v, passed=True, report={"golden": tuned})
    store.promote("part", v)
    return store


def test_validated_thresholds_reach_the_engine(tmp_path, product):
    store = _store_with_validated(tmp_path, product, {"abs_threshold": 200.0, "k": 9.0})
    ref = store.load("part")
    assert ref.metadata[TUNED_KEY] == {"abs_threshold": 200.0, "k": 9.0}

    faint = product.copy()
    draw_blob(faint, (128, 128), 12, tuple(int(v) + 40 for v in product[128, 128]))
    tuned_engine = GoldenEngine()
    handle = tuned_engine.prepare(ref)
    assert handle.config.abs_threshold == 200.0
    assert not tuned_engine.detect(handle, faint).anomaly  # 40 gray levels are inside the tuned tolerance

    explicit = GoldenEngine(abs_threshold=20.0)  # the user's explicit option wins over the tuned one
    h2 = explicit.prepare(ref)
    assert h2.config.abs_threshold == 20.0
    assert h2.config.k == 9.0
    assert explicit.detect(h2, faint).anomaly

    pinned = GoldenEngine(GoldenConfig())  # a whole config object pins every option
    assert pinned.prepare(ref).config.abs_threshold == GoldenConfig().abs_threshold


def test_rejected_validation_carries_no_thresholds(tmp_path, product):
    store = ReferenceStore(tmp_path / "refs")
    v = store.add_version("part", product)
    store.set_validation("part", v, passed=False, report={"golden": {"abs_threshold": 200.0}})
    store.promote("part", v, force=True, reason="test")
    assert TUNED_KEY not in store.load("part").metadata
