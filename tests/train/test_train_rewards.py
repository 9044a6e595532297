"""Rewards against hand-computed values (defaults alpha=0.6, lam=0.3, tau=0.3, delta=0)."""

from __future__ import annotations

import math

import pytest
from differad_edge.train.rewards import (
    center_reward,
    dclr_code_reward,
    dclr_reward,
    format_reward,
    iou_reward,
    make_format_reward,
    make_localization_reward,
    make_reward_funcs,
)

from differad_edge.errors import BoxError, ConfigError

GT = [0, 0, 100, 100]
S2 = math.sqrt(2.0)


def ans(x1: int, y1: int, x2: int, y2: int) -> str:
    return f"<think>look</think><answer>({x1},{y1}),({x2},{y2})</answer>"


@pytest.mark.parametrize(
    ("pred", "gt", "dclr", "code", "iou", "center"),
    [
        # far apart, same size: IoU 0, centers more than a diagonal apart -> s_center 0, s_scale 1, S = 0.4
        ((300, 0, 400, 100), GT, 0.3 * 0.4, 0.4, 0.0, 0.4),
        # touching edge: IoU 0, center distance 100 over diagonal 100*sqrt2 -> s_center = 1 - 1/sqrt2
        (
            (100, 0, 200, 100),
            GT,
            0.3 * (0.6 * (1 - 1 / S2) + 0.4),
            0.6 * (1 - 1 / S2) + 0.4,
            0.0,
            0.6 * (1 - 1 / S2) + 0.4,
        ),
        # prediction contains the GT (4x its area): IoU 0.25, same center, s_scale 0 -> S = 0.6
        ((0, 0, 100, 100), (25, 25, 75, 75), 0.25 + 0.75 * 0.3 * 0.6, 0.25 + 0.75 * 0.6, 0.25, 0.6),
        # GT contains the prediction: IoU 0.25, s_scale = 1 - 7500/10000 = 0.25 -> S = 0.6 + 0.1
        ((25, 25, 75, 75), GT, 0.25 + 0.75 * 0.3 * 0.7, 0.25 + 0.75 * 0.7, 0.25, 0.7),
        # identical: IoU 1 >= tau -> IoU + delta
        ((0, 0, 100, 100), GT, 1.0, 1.0, 1.0, 1.0),
        # half overlap: IoU 1/3 >= tau -> plain IoU for DCLR
        (
            (50, 0, 150, 100),
            GT,
            1 / 3,
            1 / 3 + (2 / 3) * (0.6 * (1 - 50 / (100 * S2)) + 0.4),
            1 / 3,
            0.6 * (1 - 50 / (100 * S2)) + 0.4,
        ),
    ],
)
def test_anomalous_cases(pred, gt, dclr, code, iou, center) -> None:
    c = [ans(*pred)]
    assert dclr_reward(c, [gt]) == [pytest.approx(dclr, abs=1e-6)]
    assert dclr_code_reward(c, [gt]) == [pytest.approx(code, abs=1e-6)]
    assert iou_reward(c, [gt]) == [pytest.approx(iou, abs=1e-6)]
    assert center_reward(c, [gt]) == [pytest.approx(center, abs=1e-6)]


@pytest.mark.parametrize("reward", [dclr_reward, dclr_code_reward, iou_reward, center_reward])
def test_normal_sample_rule(reward) -> None:
    zero = [0, 0, 0, 0]
    assert reward([ans(0, 0, 0, 0)], [zero]) == [1.0]  # zero box on a normal sample: right
    assert reward([ans(10, 10, 20, 20)], [zero]) == [0.0]  # a box on a normal sample: wrong
    assert reward([ans(0, 0, 0, 0)], [GT]) == [0.0]  # zero box on an anomalous sample: a miss


@pytest.mark.parametrize("reward", [dclr_reward, dclr_code_reward, iou_reward, center_reward])
@pytest.mark.parametrize(
    "text",
    [
        "no idea",  # nothing parsable
        "",  # empty
        "<answer>(0,0),(2000,50)</answer>",  # outside 0..1000
        "<answer>(50,50),(10,10)</answer>",  # inverted corners
    ],
)
def test_invalid_output_scores_zero(reward, text) -> None:
    assert reward([text], [GT]) == [0.0]
    assert reward([text], [[0, 0, 0, 0]]) == [0.0]


def _below_tau(h: float) -> float:
    """DCLR by hand for pred (0,0,100,h) inside GT (0,0,100,100), IoU = h/100 < tau."""
    overlap = h / 100
    s_center = 1 - (50 - h / 2) / (100 * S2)
    s_scale = 1 - (10000 - 100 * h) / 10000
    return overlap + (1 - overlap) * 0.3 * (0.6 * s_center + 0.4 * s_scale)


def test_jump_at_tau_and_delta() -> None:
    just_below, at_tau = dclr_reward([ans(0, 0, 100, 29), ans(0, 0, 100, 30)], [GT, GT])
    assert just_below == pytest.approx(_below_tau(29), abs=1e-6)  # 0.4104
    assert at_tau == pytest.approx(0.30, abs=1e-9)  # IoU exactly tau: IoU + delta
    assert just_below - at_tau == pytest.approx(0.1104, abs=1e-3)  # the drop documented for delta=0
    lifted = make_localization_reward("dclr", delta=0.21)
    assert lifted([ans(0, 0, 100, 30)], [GT]) == [pytest.approx(0.51)]
    assert lifted([ans(0, 0, 100, 100)], [GT]) == [pytest.approx(1.21)]
    strict = make_localization_reward("dclr", tau=0.5)  # IoU 1/3 now below tau: gets the S_cons term
    assert strict([ans(50, 0, 150, 100)], [GT]) == [
        pytest.approx(1 / 3 + (2 / 3) * 0.3 * (0.6 * (1 - 50 / (100 * S2)) + 0.4))
    ]


def test_continuity_away_from_tau() -> None:
    # below tau DCLR moves smoothly with the box; the authors' variant has no jump at all
    a, b = dclr_reward([ans(0, 0, 100, 20), ans(0, 0, 100, 21)], [GT, GT])
    assert abs(a - b) < 0.02
    assert b > a
    c, d = dclr_code_reward([ans(0, 0, 100, 29), ans(0, 0, 100, 30)], [GT, GT])
    assert 0 < d - c < 0.02
    steps = dclr_code_reward([ans(0, 0, 100, h) for h in range(1, 101)], [GT] * 100)
    assert max(abs(y - x) for x, y in zip(steps, steps[1:], strict=False)) < 0.03


def test_conversational_and_string_completions_agree() -> None:
    text = ans(25, 25, 75, 75)
    forms = [
        text,
        [{"role": "assistant", "content": text}],
        [{"role": "assistant", "content": [{"type": "text", "text": text}]}],
    ]
    assert dclr_reward(forms, [GT] * 3) == [pytest.approx(0.25 + 0.75 * 0.3 * 0.7)] * 3
    assert format_reward(forms) == [1.0, 1.0, 1.0]


def test_format_reward() -> None:
    good = "<think>a dent</think><answer>(1,2),(30,40)</answer>"
    assert format_reward([good, "<answer>(1,2),(30,40)</answer>", good + " trailing", "(1,2),(30,40)"]) == [
        1.0,
        0.0,
        0.0,
        0.0,
    ]
    assert make_format_reward(require_think=False)(["<answer>(1,2),(30,40)</answer>"]) == [1.0]


def test_trl_names_and_weights() -> None:
    funcs, weights = make_reward_funcs("dclr_code", format_weight=0.5)
    assert [f.__name__ for f in funcs] == ["format_reward", "dclr_code_reward"]
    assert weights == [0.5, 1.0]
    assert make_localization_reward("center").__name__ == "center_reward"


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(ConfigError, match="unknown reward variant"):
        make_localization_reward("giou")
    with pytest.raises(ConfigError, match="tau"):
        make_localization_reward("dclr", tau=1.5)
    with pytest.raises(ConfigError, match="2 completions but 1 solutions"):
        dclr_reward(["a", "b"], [GT])
    with pytest.raises(BoxError, match="not a box"):
        dclr_reward([ans(0, 0, 10, 10)], [[1, 2, 3]])


def test_docstring_examples_hold() -> None:
    import doctest

    import differad_edge.train.grpo as grpo
    import differad_edge.train.rewards as rewards

    for module in (rewards, grpo):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
        assert result.attempted > 0, module.__name__
