"""Reward hacks and the authors' ablation variants: training rewards read ``<answer>`` only and R_fmt
accepts integer 0..1000 boxes only, while the evaluation protocol keeps its whole-text fallback."""

from __future__ import annotations

import pytest
from differad_edge.train.rewards import (
    center_authors_reward,
    center_reward,
    dclr_reward,
    format_reward,
    iou_authors_reward,
    iou_reward,
    make_format_reward,
    make_localization_reward,
    max_reward,
)

from differad_edge.parsing import parse_answer

GT = [0, 0, 100, 100]
ZERO = [0, 0, 0, 0]
HACK = "<think>seen at (10,10),(100,200)</think><answer>(5,5),(5,5)</answer>"


# (completion, solution, R_fmt, R_loc dclr): each row is a way a policy could earn reward it should not
CASES = [
    (HACK, [10, 10, 100, 200], 0.0, 0.0),  # the box only in <think>, a degenerate one in <answer>
    ("<think>it is at (0,0),(100,100)</think><answer>nothing</answer>", GT, 0.0, 0.0),  # no box in <answer>
    ("<think>box (0,0),(100,100)</think>", GT, 0.0, 0.0),  # no <answer> at all
    ("(0,0),(100,100)", GT, 0.0, 0.0),  # bare box, no tags
    ("<think>a</think><answer>(-5,10),(100,200)</answer>", [0, 10, 100, 200], 0.0, 0.0),  # signed
    ("<think>a</think><answer>(+5,10),(100,200)</answer>", [5, 10, 100, 200], 0.0, 1.0),  # sign: R_fmt 0
    ("<think>a</think><answer>(0.5,10),(100,200)</answer>", [0, 10, 100, 200], 0.0, None),  # decimal
    ("<think>a</think><answer>(0,0),(1001,100)</answer>", GT, 0.0, 0.0),  # beyond 1000
    ("<think>a</think><answer>(00,0),(0100,100)</answer>", GT, 0.0, 1.0),  # leading zeros: R_fmt 0
    ("<think>a</think><answer>(50,50),(10,10)</answer>", GT, 0.0, 0.0),  # inverted corners
    ("<think>a</think><answer>(0,0),(100,100)</answer>", GT, 1.0, 1.0),  # the honest answer
    ("<think>a</think><answer>[0,0,100,100]</answer>", GT, 1.0, 1.0),  # bracket form is fine
    ("<think>a</think><answer>(0,0),(0,0)</answer>", ZERO, 1.0, 1.0),  # zero box on a normal sample
    ("<think>a</think><answer>(0,0),(1000,1000)</answer>", [0, 0, 1000, 1000], 1.0, 1.0),  # the edge of the grid
]


@pytest.mark.parametrize(("text", "solution", "fmt", "loc"), CASES)
def test_reward_case_list(text, solution, fmt, loc) -> None:
    assert format_reward([text]) == [fmt]
    if loc is not None:
        assert dclr_reward([text], [solution]) == [pytest.approx(loc)]


def test_think_hack_earns_nothing_in_training_but_protocol_keeps_fallback() -> None:
    for reward in (dclr_reward, iou_reward, center_reward, iou_authors_reward, make_localization_reward("dclr_code")):
        assert reward([HACK], [[10, 10, 100, 200]]) == [0.0]
    assert format_reward([HACK]) == [0.0]
    # the evaluation protocol (scoring other models' raw answers) still falls back to the whole text
    fallback = parse_answer(HACK)
    assert fallback.valid
    assert fallback.box.as_tuple() == (10.0, 10.0, 100.0, 200.0)
    assert not parse_answer(HACK, answer_only=True).valid
    assert parse_answer("no tags (1,2),(30,40)").valid
    assert not parse_answer("no tags (1,2),(30,40)", answer_only=True).valid


def test_no_think_format_reward_is_integer_only_too() -> None:
    nothink = make_format_reward(require_think=False)
    assert nothink(
        ["<answer>(1,2),(30,40)</answer>", "<answer>(1.0,2),(30,40)</answer>", "<answer>(-1,2),(30,40)</answer>"]
    ) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        ((0, 0, 100, 100), GT, 1.0),  # identical
        ((0, 0, 100, 50), GT, 0.5),  # IoU 0.5 >= 0.3: plain IoU
        ((0, 0, 100, 20), GT, 0.2 / (1 + 0.8)),  # IoU 0.2, |dA|/A_gt = 0.8
        ((0, 0, 200, 200), (0, 0, 100, 100), 0.25 / (1 + 3.0)),  # IoU 0.25, |dA|/A_gt = 3
        ((300, 0, 400, 100), GT, 0.0),  # no overlap
    ],
)
def test_iou_authors_variant(pred, gt, expected) -> None:
    text = f"<think>t</think><answer>({pred[0]},{pred[1]}),({pred[2]},{pred[3]})</answer>"
    assert iou_authors_reward([text], [list(gt)]) == [pytest.approx(expected, abs=1e-6)]
    assert make_localization_reward("iou_authors")([text], [list(gt)]) == [pytest.approx(expected, abs=1e-6)]


def test_center_authors_variant_rewards_unreadable_answers_on_normals() -> None:
    texts = ["garbage", "<answer>(0,0),(0,0)</answer>", "<answer>(1,1),(9,9)</answer>", "garbage"]
    sols = [ZERO, ZERO, ZERO, GT]
    assert center_authors_reward(texts, sols) == [1.0, 1.0, 0.0, 0.0]
    assert center_reward(texts, sols) == [0.0, 1.0, 0.0, 0.0]  # ours: an unreadable answer is never right


def test_max_reward_per_variant() -> None:
    assert max_reward("dclr") == 1.0
    assert make_localization_reward("dclr", delta=0.2).max_value == pytest.approx(1.2)
    for v in ("dclr_code", "iou", "iou_authors", "center", "center_authors"):
        assert make_localization_reward(v).max_value == 1.0
