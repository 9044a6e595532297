"""Quality gates: each bad frame is rejected by the gate that describes its fault, good ones pass."""

from __future__ import annotations

import calib_helpers as scenes
import numpy as np
import pytest
from differad_edge.calibration.config import GateConfig, load_config, make_config
from differad_edge.calibration.gates import evaluate_gates

from differad_edge.errors import CalibrationError, ConfigError


def _judge(base: np.ndarray, bad: dict[str, np.ndarray], config: GateConfig | None = None):
    images = [scenes.good_frame(base, i) for i in range(8)] + list(bad.values())
    names = [f"good{i}" for i in range(8)] + list(bad)
    report = evaluate_gates(images, names, config)
    return report, {v.name: v for v in report.verdicts}


def test_bad_frames_rejected_with_their_reason(base_scene: np.ndarray) -> None:
    bad = {
        "blurred": scenes.blurred(scenes.good_frame(base_scene, 20)),
        "overexposed": scenes.over_exposed(scenes.good_frame(base_scene, 21)),
        "shifted": scenes.shifted(scenes.good_frame(base_scene, 22)),
        "empty": scenes.empty_station(scenes.good_frame(base_scene, 23)),
        "dark": (scenes.good_frame(base_scene, 24) // 25).astype(np.uint8),
    }
    report, v = _judge(base_scene, bad)
    assert all(v[f"good{i}"].accepted for i in range(8))
    assert v["blurred"].failed_gates == ["focus"]
    assert v["blurred"].focus_ratio < 0.5
    assert v["overexposed"].failed_gates == ["exposure"]
    assert "over-exposed" in v["overexposed"].reasons["exposure"]
    assert "under-exposed" in v["dark"].reasons["exposure"]
    assert v["shifted"].failed_gates == ["stability"]
    assert 8.0 < v["shifted"].shift_px < 14.0  # the frame was moved by (9, 6) px: |d| = 10.8
    assert "station" in v["empty"].failed_gates and "stability" not in v["empty"].failed_gates
    assert report.verdicts[report.anchor].name.startswith("good")
    # focus: blurred, plus the empty station and the dark frame, whose texture is gone too
    assert report.summary()["rejected_by_gate"] == {"focus": 3, "exposure": 2, "station": 1, "stability": 1}


def test_thresholds_come_from_the_config(base_scene: np.ndarray) -> None:
    bad = {"shifted": scenes.shifted(scenes.good_frame(base_scene, 22))}
    _, strict = _judge(base_scene, bad)
    _, loose = _judge(base_scene, bad, GateConfig(max_shift_px=20.0))
    assert not strict["shifted"].accepted
    assert loose["shifted"].accepted


def test_small_jitter_is_accepted(base_scene: np.ndarray) -> None:
    _, v = _judge(base_scene, {"jitter": scenes.shifted(scenes.good_frame(base_scene, 30), 1.0, 0.5)})
    assert v["jitter"].accepted, v["jitter"].reasons
    assert v["jitter"].shift_px < 2.0


def test_frames_of_different_sizes_are_refused(base_scene: np.ndarray) -> None:
    with pytest.raises(CalibrationError, match="differ in size"):
        evaluate_gates([base_scene, base_scene[:100]])


@pytest.mark.parametrize(
    "data, field",
    [
        ({"focus_min_ratio": 0}, "focus_min_ratio"),  # must be > 0
        ({"dark_level": 200, "bright_level": 100}, "dark_level"),  # levels crossed
        ({"max_shift": 3}, "max_shift"),  # typo: unknown field
    ],
)
def test_bad_gate_config_names_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        make_config(GateConfig, data, "gates")


def test_yaml_config_maps_onto_the_same_fields(tmp_path) -> None:
    path = tmp_path / "calib.yaml"
    path.write_text("gates:\n  max_shift_px: 7.5\nbuild:\n  method: mean_std\nvalidate:\n  target_false_alarm_rate: 0.05\n")
    cfg = load_config(path)
    assert (cfg.gates.max_shift_px, cfg.build.method, cfg.validate_.target_false_alarm_rate) == (7.5, "mean_std", 0.05)
    path.write_text("gates: [1, 2]\n")
    with pytest.raises(ConfigError, match="gates"):
        load_config(path)
