"""The node's pure pieces: parameter validation, the keep-latest slot, and the diagnostics statistics."""

from __future__ import annotations

import re
import threading

import pytest
from differad_edge_ros.params import InspectorParams, command_line_literals
from differad_edge_ros.slot import LatestSlot
from differad_edge_ros.stats import NodeStats

from differad_edge.errors import ConfigError

pytestmark = pytest.mark.ros


def test_defaults_with_store_and_product_are_valid(tmp_path):
    p = InspectorParams(store=str(tmp_path), product_id="part-1")
    assert p.engine == "golden"
    assert p.options == {}


def test_model_and_engine_options_become_constructor_options(tmp_path):
    p = InspectorParams(
        store=str(tmp_path), product_id="p", engine="vlm", model=str(tmp_path), engine_options='{"max_new_tokens": 32}'
    )
    assert p.options == {"max_new_tokens": 32, "model": str(tmp_path)}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"store": ""}, "store is empty"),
        ({"store": "/no/such/store"}, "store='/no/such/store' is not a folder"),
        ({"product_id": ""}, "product_id is empty"),
        ({"product_id": "../etc"}, "product_id='../etc' is not a valid id"),
        ({"engine": "yolo"}, "engine='yolo' is not supported; expected one of: golden, onnx, vlm"),
        ({"engine": "onnx"}, "engine='onnx' needs a model"),
        ({"model": "/no/such/model"}, "model='/no/such/model' does not exist"),
        ({"engine_options": "{k: 1}"}, "engine_options='{k: 1}' is not JSON"),
        ({"engine_options": "[1]"}, "is not a JSON object"),
        ({"input": "h264"}, "input='h264' is not supported"),
        ({"qos": "fast"}, "qos='fast'"),
        ({"align": "warp"}, "align='warp'"),
        ({"diagnostics_period": 0.0}, "diagnostics_period=0.0"),
        ({"latency_window": 2}, "latency_window=2"),
        ({"queue_depth": 0}, "queue_depth=0: expected an integer from 1 to 16"),
        ({"image_topic": " "}, "image_topic is empty"),
    ],
)
def test_each_invalid_value_is_named_with_the_fix(tmp_path, override, message):
    with pytest.raises(ConfigError) as e:
        InspectorParams(**{"store": str(tmp_path), "product_id": "p", **override})
    assert message in str(e.value)


def test_loosely_typed_ros_values_are_coerced_to_the_field_types(tmp_path):
    p = InspectorParams.from_values(
        {
            "store": str(tmp_path),
            "product_id": "p",
            "diagnostics_period": 2,
            "latency_window": 50,
            "publish_annotated": True,
        }
    )
    assert (p.product_id, p.diagnostics_period, p.latency_window, p.publish_annotated) == ("p", 2.0, 50, True)


def test_an_id_typed_as_a_number_keeps_its_command_line_text_or_is_refused_with_the_quoting(tmp_path):
    argv = ["node", "--ros-args", "-p", "product_id:=0123", "-p", "inspector:view_id:='007'", "-p", "k:=1"]
    literals = command_line_literals(argv)
    assert literals == {"product_id": "0123", "view_id": "007"}
    p = InspectorParams.from_values({"store": str(tmp_path), "product_id": 83, "view_id": 7}, literals)
    assert (p.product_id, p.view_id) == ("0123", "007")  # YAML's octal 83 and int 7 undone
    with pytest.raises(ConfigError, match=re.escape("quote the id: -p product_id:=\"'83'\"")):
        InspectorParams.from_values({"store": str(tmp_path), "product_id": 83})


def test_nested_engine_parameters_come_from_the_golden_config():
    import dataclasses

    from differad_edge_ros.engine_params import engine_params, explicit_options

    from differad_edge.engines.golden import GoldenConfig

    params = {p.name: p for p in engine_params("golden")}
    assert {f"golden.{n}" for n in ("k", "min_area", "abs_threshold", "max_defects", "channels")} <= set(params)
    assert params["golden.k"].default == GoldenConfig().k
    assert params["golden.k"].range == (0.0, 100.0)
    assert "smallest defect" in params["golden.min_area"].description
    assert params["golden.channels"].choices == ("gray", "rgb")
    assert params["golden.bright_threshold"].to_option(-1.0) is None  # unset, as None in the config
    # descriptions and ranges are the fields' option() metadata only, every golden one settable at run time
    fields = {f.name: f for f in dataclasses.fields(GoldenConfig)}
    for p in params.values():
        assert p.description.startswith(fields[p.field].metadata["help"])
        rng = fields[p.field].metadata["range"]
        assert p.range == (None if rng is None else (min(rng[0], -1), rng[1]) if p.optional else rng)
        assert p.dynamic
    assert params["golden.hysteresis"].range == (0.0, 1.0)
    values = {n: p.default for n, p in params.items()} | {"golden.k": 6.0}
    # only what the user set reaches the engine: thresholds tuned by calibration apply to the rest
    assert explicit_options(list(params.values()), values, {"golden.min_area"}) == {"k": 6.0, "min_area": 25}


@pytest.mark.parametrize(("engine", "config"), [("vlm", "VLMConfig"), ("onnx", "OnnxConfig")])
def test_nested_engine_parameters_of_the_model_engines_come_from_their_config(engine, config):
    """vlm.* / onnx.* are the scalar fields of VLMConfig / OnnxConfig with their help text, choices and
    ranges; read at configure only (changing one means another model or session)."""
    import dataclasses
    import importlib

    from differad_edge_ros.engine_params import engine_params

    cls = getattr(importlib.import_module(f"differad_edge.engines.configuration_{engine}"), config)
    params = {p.field: p for p in engine_params(engine)}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(params) <= set(fields)
    assert {"reference_cache", "max_new_tokens", "max_cached_references", "grammar"} <= set(params)
    for name, p in params.items():
        assert p.name == f"{engine}.{name}"
        assert p.description.startswith(fields[name].metadata["help"])
        assert not p.dynamic
    assert params["max_new_tokens"].optional
    assert params["max_new_tokens"].to_option(-1) is None
    assert params["max_new_tokens"].range == (-1, 4096)  # the config's [1, 4096] and the unset value
    assert params["max_cached_references"].range == (1, 64)
    if engine == "vlm":
        assert params["kv_cache"].choices == ("dynamic", "static")
        assert params["dtype"].choices == ("fp32", "bf16", "fp16")
        assert "size_policy" not in params  # not one scalar
    else:
        assert "providers" not in params


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"latency_window": "abc"}, "latency_window='abc': expected an integer"),
        ({"latency_window": 2.5}, "latency_window=2.5: expected an integer"),
        ({"publish_annotated": 1}, "publish_annotated=1: expected true or false"),
        ({"diagnostics_period": "fast"}, "diagnostics_period='fast': expected a number"),
        ({"product_id": [1, 2]}, "product_id=[1, 2]: expected a string"),
    ],
)
def test_values_of_the_wrong_type_are_named(tmp_path, values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        InspectorParams.from_values({"store": str(tmp_path), "product_id": "p", **values})


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as e:
        InspectorParams(store="", product_id="", engine="x")
    assert str(e.value).count("\n  - ") == 3


def test_slot_keeps_only_the_newest_and_counts_drops():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.take(timeout=0) == 3
    assert slot.dropped == 2
    assert slot.take(timeout=0.01) is None


def test_queue_of_two_absorbs_one_late_take_and_drops_the_oldest_beyond():
    slot: LatestSlot[int] = LatestSlot(2)
    assert (slot.put(1), slot.put(2)) == (False, False)  # one long inspection: nothing lost
    assert slot.take(timeout=0) == 1
    assert slot.take(timeout=0) == 2
    assert [slot.put(i) for i in (3, 4, 5, 6)] == [False, False, True, True]
    assert (slot.take(timeout=0), slot.take(timeout=0), slot.dropped) == (5, 6, 2)  # the newest two, in order
    with pytest.raises(ValueError, match="depth=0"):
        LatestSlot(0)


def test_slot_wakes_a_waiting_worker_and_close_releases_it():
    slot: LatestSlot[str] = LatestSlot()
    got: list[str | None] = []
    first = threading.Event()

    def worker() -> None:
        got.append(slot.take(5.0))
        first.set()
        got.append(slot.take(5.0))  # blocks until close()

    t = threading.Thread(target=worker)
    t.start()
    slot.put("frame")
    assert first.wait(2.0)
    slot.close()
    t.join(2.0)  # well before the 5 s timeout: close() woke it
    assert not t.is_alive()
    assert got == ["frame", None]
    assert slot.closed


def test_stats_rates_and_percentiles():
    now = [100.0]
    stats = NodeStats(latency_window=10, clock=lambda: now[0], window=10.0)
    for i in range(20):
        stats.frame_in()
        if i % 2:
            stats.frame_dropped()
        else:
            stats.done(latency_ms=float(i), anomaly=i % 4 == 0, valid=i != 18)
    stats.bad_frame("bad encoding")
    now[0] = 102.0
    s = stats.snapshot()
    assert (s.frames_in, s.processed, s.dropped, s.bad_frames, s.anomalies, s.invalid) == (20, 10, 10, 1, 5, 1)
    assert s.input_rate_hz == pytest.approx(10.0)
    assert s.processed_rate_hz == pytest.approx(5.0)
    assert s.latency_p50_ms == pytest.approx(9.0)  # median of 0, 2, ..., 18
    assert s.last_error == "bad encoding"
    assert s.level == 1
    assert "10 dropped" in s.message
    now[0] = 111.0  # the window (10 s) has moved past every event: healthy again, rates 0
    s = stats.snapshot()
    assert s.level == 0
    assert s.input_rate_hz == 0.0
    assert s.frames_in == 20


def test_stats_rate_below_one_fps_and_error_on_silence_and_repeated_engine_failures():
    now = [0.0]
    stats = NodeStats(clock=lambda: now[0], window=10.0, frame_timeout=3.0, engine_error_limit=3)
    for t in (0.0, 2.0, 4.0, 6.0, 8.0):  # 0.5 fps
        now[0] = t
        stats.frame_in()
        stats.done(1.0, False)
    now[0] = 10.0
    s = stats.snapshot()
    assert s.input_rate_hz == pytest.approx(0.5)
    assert s.level == 0
    now[0] = 12.0
    s = stats.snapshot()
    assert s.level == 2
    assert "no frame for 4.0 s" in s.message
    for _ in range(3):
        stats.frame_in()
        stats.done(1.0, False, valid=False, engine_failed=True, reason="engine_error: boom")
    s = stats.snapshot()
    assert s.level == 2
    assert "3 frames in a row" in s.message
    stats.frame_in()
    stats.done(1.0, False)  # one success resets the run: WARN while the failures are in the window
    assert stats.snapshot().level == 1


def test_lost_frames_from_stamps_against_the_expected_rate():
    stats = NodeStats(expected_rate=10.0)
    lost = [stats.frame_in(int(t * 1e8)) for t in (0, 1, 2, 6, 7, 7, 5, 9)]  # 3 missing; repeat/older ignored
    assert lost == [0, 0, 0, 3, 0, 0, 0, 1]
    assert stats.lost == 4


def test_reference_id_maps_a_view_to_one_store_id():
    from differad_edge.store import ID_PATTERN
    from differad_edge.views import reference_id

    assert reference_id("housing") == reference_id("housing", "") == "housing"
    assert reference_id("housing", "top") == "housing.top"
    assert ID_PATTERN.match("housing.top")
    for product, view, message in [
        ("housing", "a.b", "view id 'a.b'"),
        ("../x", None, "product id '../x'"),
        ("p" * 60, "view1", "longer than 64"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            reference_id(product, view)


def test_calibration_addresses_a_view_by_its_reference_id(tmp_path, capsys):
    import numpy as np
    from differad_edge.calibration.cli import main as calibrate

    from differad_edge.store import ReferenceStore

    store = ReferenceStore(tmp_path / "s")
    v = store.add_version("housing.top", np.full((64, 64, 3), 100, np.uint8))
    store.set_validation("housing.top", v, True, {})
    assert (
        calibrate(
            [
                "promote",
                "--store",
                str(store.root),
                "--product",
                "housing",
                "--view",
                "top",
                "--version",
                v,
                "--operator",
                "test",
            ]
        )
        == 0
    )
    assert store.active_version("housing.top") == v
    assert calibrate(["list", "--store", str(store.root), "--product", "housing", "--view", "a.b"]) == 2
    assert "view id 'a.b' is not valid" in capsys.readouterr().err
