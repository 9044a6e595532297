"""parsing: every answer format of the authors' protocol (section 4), first valid box, invalid -> reason,
and the strict format check used as the format reward."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from differad_edge.boxes import ZERO_BOX, Box
from differad_edge.parsing import box_problem, format_box, is_strict_format, parse_answer

B = Box(100, 200, 300, 400)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>scratch top left</think><answer>(100,200),(300,400)</answer>", B),  # the trained format
        ("<answer>[100,200,300,400]</answer>", B),  # bracket list inside <answer>
        ("<answer>[[100, 200, 300, 400]]</answer>", B),  # nested list (InternVL/MiniCPM style)
        ("<|box_start|>(100,200),(300,400)<|box_end|>", B),  # Qwen2-VL special tokens
        ("The anomaly is at 100 200 300 400.", B),  # bare numbers, sentence-final period
        ("<answer>( 100 , 200 ) , ( 300 , 400 )</answer>", B),  # spaces everywhere
        ("<answer>(100,200) (300,400)</answer>", B),  # no comma between the corners
        ("<ANSWER>(100,200),(300,400)</ANSWER>", B),  # tag case does not matter
        ("<answer>(100,200),(300,400)", B),  # unclosed <answer> (truncated generation)
        ("<answer>(100.5,200.25),(300,400)</answer>", Box(100.5, 200.25, 300, 400)),  # decimals
        ("<answer>(0,0),(0,0)</answer>", ZERO_BOX),  # the zero box is a valid "no anomaly"
        ("<answer>[0, 0, 0, 0]</answer>", ZERO_BOX),
        ("<answer>(0,0),(1000,1000)</answer>", Box(0, 0, 1000, 1000)),  # the whole image is in range
    ],
)
def test_formats(text: str, expected: Box) -> None:
    p = parse_answer(text)
    assert p.valid
    assert p.reason is None
    assert p.box == expected


def test_answer_region_comes_first() -> None:
    text = "<think>first (1,1),(5,5) then</think><answer>(100,200),(300,400)</answer> also (7,7),(9,9)"
    p = parse_answer(text)
    assert p.box == B
    assert p.think == "first (1,1),(5,5) then"


def test_first_valid_box_wins_and_invalid_ones_are_skipped() -> None:
    assert parse_answer("<answer>(1200,0),(1300,50) (100,200),(300,400)</answer>").box == B  # out of range skipped
    assert parse_answer("<answer>(500,500),(400,600) [100,200,300,400]</answer>").box == B  # degenerate skipped
    assert parse_answer("<answer>(10,20),(30,40) and (100,200),(300,400)</answer>").box == Box(10, 20, 30, 40)


def test_outside_answer_used_when_answer_has_no_box() -> None:
    p = parse_answer("<answer>(2000,0),(2100,5)</answer> corrected: (100,200),(300,400)")
    assert p.valid
    assert p.box == B


@pytest.mark.parametrize(
    ("text", "reason_part"),
    [
        (None, "empty"),
        ("", "empty"),
        ("   \n", "empty"),
        ("I cannot tell.", "no box found"),
        ("<answer>[100,200,300]</answer>", "no box found"),  # three numbers are not a box
        ("<answer>(-5,10),(20,30)</answer>", "outside 0..1000"),
        ("<answer>(100,200),(1001,400)</answer>", "outside 0..1000"),
        ("<answer>(300,200),(100,400)</answer>", "degenerate"),  # inverted x
        ("<answer>(100,200),(300,200)</answer>", "degenerate"),  # zero height
    ],
)
def test_invalid_answers_have_no_box_and_a_reason(text: str | None, reason_part: str) -> None:
    p = parse_answer(text)
    assert not p.valid
    assert p.box is None
    assert not p.is_anomaly
    assert reason_part in p.reason


def test_is_anomaly_is_the_f1_positive() -> None:
    assert parse_answer("<answer>(100,200),(300,400)</answer>").is_anomaly
    assert not parse_answer("<answer>(0,0),(0,0)</answer>").is_anomaly


def test_custom_scale() -> None:
    assert parse_answer("<answer>(10,10),(90,90)</answer>", scale=100).valid
    assert not parse_answer("<answer>(10,10),(190,90)</answer>", scale=100).valid


@pytest.mark.parametrize(
    ("text", "think_required", "expected"),
    [
        ("<think>ok</think><answer>(0,0),(0,0)</answer>", True, True),
        ("<think>a\nmultiline thought</think>\n<answer>(1,2),(3,4)</answer>\n", True, True),
        ("<think>ok</think><answer>[1,2,3,4]</answer>", True, True),  # both box syntaxes count
        ("<answer>(1,2),(3,4)</answer>", True, False),  # think missing
        ("<answer>(1,2),(3,4)</answer>", False, True),  # the no-think template's format
        ("<think></think><answer>(1,2),(3,4)</answer>", False, True),  # empty think allowed without think
        ("<think>ok</think><answer>(1,2),(3,4)</answer> trailing", True, False),  # extra text
        ("prefix <think>ok</think><answer>(1,2),(3,4)</answer>", True, False),
        ("<think>ok</think><answer>box: (1,2),(3,4)</answer>", True, False),  # words inside <answer>
        ("<think>ok</think><answer>[[1,2,3,4]]</answer>", True, False),  # not the trained syntax
        ("<think>ok<answer>(1,2),(3,4)</answer>", True, False),  # unclosed think
        (None, True, False),
    ],
)
def test_strict_format(text: str | None, think_required: bool, expected: bool) -> None:
    assert is_strict_format(text, require_think=think_required) is expected


@given(st.integers(0, 999), st.integers(0, 999), st.integers(1, 1000), st.integers(1, 1000))
def test_format_box_round_trips_through_the_parser(x1: int, y1: int, w: int, h: int) -> None:
    box = Box(x1, y1, min(1000, x1 + w), min(1000, y1 + h))
    text = f"<think>t</think><answer>{format_box(box)}</answer>"
    assert is_strict_format(text)
    assert parse_answer(text).box == box


@settings(max_examples=60)
@given(st.text(max_size=200))
def test_parser_never_raises(text: str) -> None:
    p = parse_answer(text)
    assert p.valid == (p.box is not None)
    assert p.box is None or box_problem(p.box) is None


def test_box_problem() -> None:
    assert box_problem(ZERO_BOX) is None
    assert box_problem(Box(1, 1, 2, 2)) is None
    assert "outside" in box_problem(Box(0, 0, 1001, 5))
    assert "degenerate" in box_problem(Box(5, 5, 5, 9))
