"""The golden engine honours the engine protocol, and the core-vision modules stay torch-free."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from differad_edge.engines import ENGINES, Detection, Engine, EngineHandle, Reference, create_engine
from differad_edge.engines.golden import GoldenEngine

from .parts import draw_blob, make_product


def test_golden_is_registered_and_conforms():
    assert ENGINES["golden"] == "differad_edge.engines.golden:GoldenEngine"
    engine = create_engine("golden", abs_threshold=25.0)
    assert isinstance(engine, GoldenEngine)
    assert isinstance(engine, Engine)
    assert engine.name == "golden"
    assert engine.config.abs_threshold == 25.0

    ref = make_product(96, seed=0)
    handle = engine.prepare(Reference(ref, product_id="p", version="v1"))
    assert isinstance(handle, EngineHandle)
    assert handle.reference.product_id == "p"

    bad = ref.copy()
    draw_blob(bad, (40, 50), 6, (0, 0, 0))
    single = [engine.detect(handle, t) for t in (ref, bad)]
    batch = engine.detect_batch(handle, [ref, bad])
    for one, many in zip(single, batch, strict=True):
        assert isinstance(one, Detection)
        assert (one.box, one.score, one.valid) == (many.box, many.score, many.valid)
    assert [d.anomaly for d in batch] == [False, True]
    for det in batch:
        out = det.to_json()
        assert {"anomaly", "box", "score", "valid", "engine", "timings_ms"} <= set(out)
        assert 0.0 <= out["score"] <= 1.0
        json.dumps(out)
    json.dumps(engine.describe())
    engine.close()
    engine.close()  # safe twice


def test_core_vision_imports_without_torch():
    code = (
        "import sys\n"
        "import differad_edge.alignment, differad_edge.variation, differad_edge.store\n"
        "import differad_edge.inspector, differad_edge.engines.golden\n"
        "bad = [m for m in ('torch', 'rclpy', 'trl', 'differad_edge.cli') if m in sys.modules]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_detection_box_is_in_target_pixels():
    engine = GoldenEngine(blur=0)  # no blur: the box must be the defect's exact pixel box
    ref = make_product(128, seed=3)
    target = ref.copy()
    gt = draw_blob(target, (100, 30), 7, (255, 255, 255))
    det = engine.detect(engine.prepare(Reference(ref)), target)
    assert det.box.as_int_list() == gt.as_int_list()
    assert np.isfinite(det.score)
