"""The report's heat map is the golden engine's own threshold, not a re-derived tolerance."""

from __future__ import annotations

import numpy as np
from differad_edge.calibration.validate import residual_map

from differad_edge.engines.base import Reference
from differad_edge.engines.golden import GoldenEngine


def _reference() -> Reference:
    img = np.full((64, 64, 3), 90, np.uint8)
    img[:, 32:] = 170  # a sharp edge: the engine tolerates shift_px * gradient there
    spread = np.full(img.shape, 1.5, np.float32)
    return Reference(img, mean=img.astype(np.float32), spread=spread)


def test_heat_map_is_the_engine_anomaly_map() -> None:
    ref = _reference()
    frame = ref.image.copy()
    frame[10:14, 10:14] += 40  # a bright defect on the flat side
    frame[:, 31] = 130  # the edge moved by half a pixel
    golden = {"brightness": "none"}
    ratio = residual_map(ref, frame, 3.0, 12.0, golden)
    engine = GoldenEngine(k=3.0, abs_threshold=12.0, anomaly_map=True, brightness="none")
    expected = engine.detect(engine.prepare(ref), frame).anomaly_map
    assert expected is not None
    np.testing.assert_allclose(ratio, expected)
    assert ratio[11, 11] > 1.0  # the defect is beyond the threshold
    assert ratio[32, 31] < 1.0  # the moved edge is within the engine's edge tolerance


def test_frame_pixels_outside_the_valid_region_are_not_judged() -> None:
    ref = _reference()
    frame = ref.image.copy()
    frame[:, :16] = 0  # the warp seam: no frame pixels there
    valid = np.full(frame.shape[:2], 255, np.uint8)
    valid[:, :16] = 0
    ratio = residual_map(ref, frame, 3.0, 12.0, {"brightness": "none"}, valid)
    assert float(ratio[:, :16].max()) == 0.0
    assert float(residual_map(ref, frame, 3.0, 12.0, {"brightness": "none"})[:, :16].max()) > 1.0
