"""The engines' typed configs (``VLMConfig``, ``OnnxConfig``; ``GoldenConfig`` in its own tests): one
place that checks types, ranges and the checks across fields, before any model or bundle loads."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from differad_edge.engines.configuration_onnx import OnnxConfig
from differad_edge.engines.configuration_vlm import VLMConfig
from differad_edge.engines.golden import GoldenConfig
from differad_edge.errors import ConfigError
from differad_edge.vlm.size_policy import SizePolicy


def test_defaults_construct_and_are_immutable() -> None:
    vlm, onnx = VLMConfig(), OnnxConfig()
    assert vlm.size_policy == SizePolicy()
    assert vlm.max_new_tokens is None
    assert onnx.providers is None
    for config in (vlm, onnx, GoldenConfig()):
        with pytest.raises(dataclasses.FrozenInstanceError):  # replaced whole (dataclasses.replace), never edited
            setattr(config, dataclasses.fields(config)[0].name, None)


def test_inputs_are_normalized_to_one_typed_form() -> None:
    cfg = VLMConfig(size_policy={"max_pixels": 64 * 64, "min_pixels": 1024})
    assert cfg.size_policy == SizePolicy(max_pixels=64 * 64, min_pixels=1024)
    assert VLMConfig(size_policy=None).size_policy == SizePolicy()
    onnx = OnnxConfig(providers=["CPUExecutionProvider"], tensorrt_cache_dir=Path("/tmp/trt"))
    assert onnx.providers == ("CPUExecutionProvider",)  # hashable, comparable
    assert onnx.tensorrt_cache_dir == "/tmp/trt"
    assert OnnxConfig(providers=("CPUExecutionProvider",)) == onnx.__class__(providers=["CPUExecutionProvider"])
    assert VLMConfig(max_batch=3).to_dict()["size_policy"] == dataclasses.asdict(SizePolicy())


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: VLMConfig(kv_cache="paged"),
            "vlm kv_cache='paged' is not supported; expected one of: dynamic, static",
        ),
        (lambda: VLMConfig(max_new_tokens=0), "vlm max_new_tokens=0 must be an integer in [1, 4096] or None"),
        (lambda: VLMConfig(max_batch=0), "vlm max_batch=0 must be an integer in [1, 64]"),
        (lambda: VLMConfig(max_batch=2.5), "vlm max_batch=2.5 must be an integer"),
        (lambda: VLMConfig(reference_cache="yes"), "vlm reference_cache='yes' must be true or false"),
        (lambda: VLMConfig(dtype="fp8"), "vlm dtype='fp8' is not supported; expected one of: fp32, bf16, fp16"),
        (lambda: VLMConfig(device="tpu"), "device 'tpu' is not supported"),
        (lambda: VLMConfig(template_id="nope"), "unknown prompt template 'nope'"),
        (lambda: VLMConfig(size_policy={"max_px": 10}), "bad size_policy"),
        (lambda: VLMConfig(size_policy=SizePolicy(factor=32), max_cached_references=0), "max_cached_references=0"),
        (lambda: OnnxConfig(threads=-2), "onnx threads=-2 must be an integer in [0, 256] or None"),
        (lambda: OnnxConfig(providers="CPUExecutionProvider"), "must be a list of provider names"),
        (lambda: OnnxConfig(io_binding="on"), "onnx io_binding='on' must be true or false or None"),
        # golden: the ranges of its fields' option(), through the same check_fields
        (lambda: GoldenConfig(k=100.5), "golden k=100.5 must be a number in [0, 100]"),
        (
            lambda: GoldenConfig(bright_threshold=256),
            "golden bright_threshold=256 must be a number in [0, 255] or None",
        ),
        (lambda: GoldenConfig(max_defects=257), "golden max_defects=257 must be an integer in [1, 256]"),
        (lambda: GoldenConfig(min_area=-1), "golden min_area=-1 must be an integer in [1, 1e+06]"),
        (lambda: GoldenConfig(anomaly_map="yes"), "golden anomaly_map='yes' must be true or false"),
        (lambda: GoldenConfig(hysteresis=0.0), "golden hysteresis=0.0 must be a number in (0, 1]"),
        (lambda: GoldenConfig(merge_px=-1), "golden merge_px=-1 must be an integer >= 0"),
    ],
)
def test_bad_values_are_named_with_what_is_expected(build, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build()


@pytest.mark.parametrize("config_type", [GoldenConfig, VLMConfig, OnnxConfig])
def test_every_field_carries_its_help_and_range_in_one_place(config_type) -> None:
    """Help text and range live on the field (option()), nowhere else: the CLI and the ROS node read them."""
    for f in dataclasses.fields(config_type):
        assert f.metadata.get("help"), f"{config_type.__name__}.{f.name} has no help text"
        assert {"range", "dynamic"} <= set(f.metadata), f"{config_type.__name__}.{f.name} is not an option()"
    assert all(f.metadata["dynamic"] for f in dataclasses.fields(GoldenConfig))  # no golden option needs a reload


def test_golden_accepts_what_it_accepted_before_the_shared_checks() -> None:
    import numpy as np

    cfg = GoldenConfig(border=np.int64(2), k=np.float32(3.5), anomaly_map=np.bool_(True), min_area=0)
    assert (cfg.border, cfg.k, cfg.anomaly_map, cfg.min_area) == (2, 3.5, True, 1)  # 0 = any size: one pixel
    assert type(cfg.border) is int
    assert GoldenConfig(abs_threshold=255, k=100, min_area=1_000_000, hysteresis=1.0).k == 100  # closed ranges


def test_paraphrase_is_checked_against_the_chosen_template() -> None:
    """A cross-field check: the paraphrase index must exist in the template named (the model's own
    template, when none is named, is checked by the engine once it has the model)."""
    from differad_edge.prompts import THINK_TEMPLATE

    last = len(THINK_TEMPLATE.instructions) - 1
    assert VLMConfig(template_id=THINK_TEMPLATE.id, paraphrase=last).paraphrase == last
    with pytest.raises(ConfigError, match="paraphrase index"):
        VLMConfig(template_id=THINK_TEMPLATE.id, paraphrase=last + 1)


def test_engines_refuse_unknown_keywords_with_the_closest_name_before_loading(tmp_path: Path) -> None:
    from differad_edge.engines.onnx import OnnxEngine
    from differad_edge.engines.vlm import VLMEngine

    missing = tmp_path / "no-model"  # loading it would raise ModelLoadError / BundleError: the check came first
    with pytest.raises(ConfigError, match="did you mean 'max_batch'"):
        VLMEngine(missing, max_batchh=2)
    with pytest.raises(ConfigError, match="did you mean 'threads'"):
        OnnxEngine(missing, threds=2)
    with pytest.raises(ConfigError, match="must be a VLMConfig"):
        VLMEngine(missing, OnnxConfig())
