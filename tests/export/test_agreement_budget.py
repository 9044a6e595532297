"""Agreement metrics, the memory estimate and export option validation (plain functions, no model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from differad_edge.export.agreement import (
    Thresholds,
    box_agreement,
    decision,
    failures,
    summarize,
    token_agreement,
)
from differad_edge.export.budget import GIB, ModelShape, check_budget, estimate
from differad_edge.export.exporter import make_config

from differad_edge.boxes import ZERO_BOX, Box
from differad_edge.errors import BudgetError, ConfigError

A = "<answer>(100,100),(300,300)</answer>"
B = "<answer>(100,100),(300,200)</answer>"  # half of A
OK = "<answer>(0,0),(0,0)</answer>"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1, 2, 3], [1, 2, 3], 1.0),  # identical
        ([1, 2, 3, 4], [1, 2, 9, 4], 0.5),  # agreement stops at the first divergence
        ([1, 2], [1, 2, 3, 4], 0.5),  # a shorter answer counts against the longer one
        ([5], [6], 0.0),
        ([], [], 1.0),
    ],
)
def test_token_agreement(a, b, expected):
    assert token_agreement(a, b) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (Box(100, 100, 300, 300), Box(100, 100, 300, 200), 0.5),
        (ZERO_BOX, ZERO_BOX, 1.0),  # both say "no anomaly"
        (ZERO_BOX, Box(0, 0, 10, 10), 0.0),
        (None, None, 1.0),  # both invalid
        (None, Box(0, 0, 10, 10), 0.0),
    ],
)
def test_box_agreement(a, b, expected):
    assert box_agreement(a, b) == pytest.approx(expected)


def test_summarize_and_thresholds():
    source = [([1, 2, 3], A), ([4, 5], OK), ([7], "garbage")]
    bundle = [([1, 2, 3], A), ([4, 6], B), ([7], "more garbage")]
    agg = summarize(source, bundle)
    assert agg.pairs == 3
    assert agg.exact_token_match == pytest.approx(2 / 3)
    assert agg.token_agreement == pytest.approx((1 + 0.5 + 1) / 3)
    assert agg.box_iou == pytest.approx((1 + 0 + 1) / 3)
    assert agg.decision_agreement == pytest.approx(2 / 3)  # anomaly vs ok on the second pair
    assert [decision(b) for b in (None, ZERO_BOX, Box(1, 1, 2, 2))] == ["invalid", "ok", "anomaly"]
    assert failures(agg, "fp32", Thresholds())
    assert "identical greedy tokens" in failures(agg, "fp32", Thresholds())[0]
    assert failures(agg, "int4", Thresholds(token_agreement=0.5, box_iou=0.5, decision_agreement=0.5)) == []
    missed = failures(agg, "int4", Thresholds(token_agreement=0.5, box_iou=0.9, decision_agreement=0.5))
    assert len(missed) == 1
    assert missed[0].startswith("box_iou 0.667 < threshold 0.900")


SHAPE_2B = ModelShape(  # Qwen3-VL-2B-Instruct numbers (params rounded)
    text_params=1_720_000_000,
    vision_params=406_000_000,
    embed_params=311_164_928,
    hidden=2048,
    layers=28,
    heads=16,
    kv_heads=8,
    head_dim=128,
    intermediate=6144,
    vocab=151936,
    vision_hidden=1024,
    vision_heads=16,
    vision_intermediate=4096,
)


def test_memory_estimate_scales_with_precision_and_image_size():
    fp32 = estimate(SHAPE_2B, "fp32", 800 * 800, 120, 64)
    int4 = estimate(SHAPE_2B, "int4", 800 * 800, 120, 64)
    small = estimate(SHAPE_2B, "int4", 256 * 256, 120, 64)
    assert int4.weights_bytes < fp32.weights_bytes / 2.5  # vision stays fp32, embeddings fp16
    assert fp32.image_tokens == 625
    assert fp32.max_seq_len == 120 + 2 * 625 + 64
    # KV: 2 (k, v) x 28 layers x 8 heads x 128 dims x 1434 tokens x 4 bytes
    assert fp32.kv_cache_bytes == 2 * 28 * 8 * 128 * 1434 * 4
    assert small.total_bytes < int4.total_bytes
    assert int4.total_bytes < 6 * GIB  # the target for the int4 bundle on a 24 GB GPU
    check_budget(int4, 24)
    with pytest.raises(BudgetError, match=r"exceeds the budget of 1 GiB"):
        check_budget(fp32, 1)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"block_size": 48}, "power of two"),
        ({"quant": "int3"}, "quant"),
        ({"budget_gb": 0}, "budget_gb"),
        ({"out": Path("m")}, "--out must differ"),
    ],
)
def test_bad_export_options_are_one_config_error(options, match):
    base = {"model": Path("m"), "out": Path("b"), "quant": "int4"}
    with pytest.raises(ConfigError, match=match):
        make_config(**{**base, **options})
