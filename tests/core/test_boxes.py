"""boxes: the one box type and IoU (paper Eq. 3), with property tests for IoU."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from differad_edge.boxes import ZERO_BOX, Box, box_from_mask, center_distance, intersection_area, iou
from differad_edge.errors import BoxError

coord = st.floats(min_value=-500, max_value=1500, allow_nan=False, allow_infinity=False)


@st.composite
def proper_boxes(draw: st.DrawFn) -> Box:
    """Non-degenerate boxes (x1 < x2, y1 < y2) with a visible area."""
    x1, y1 = draw(coord), draw(coord)
    w = draw(st.floats(min_value=0.5, max_value=800))
    h = draw(st.floats(min_value=0.5, max_value=800))
    return Box(x1, y1, x1 + w, y1 + h)


any_boxes = st.builds(Box, coord, coord, coord, coord)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),  # identical
        ((0, 0, 10, 10), (5, 0, 15, 10), 1 / 3),  # half overlap: 50 / 150
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges share no area
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),  # disjoint
        ((0, 0, 10, 10), (2, 2, 4, 4), 0.04),  # contained: 4 / 100
        ((0, 0, 10, 10), (0, 0, 3, 10), 0.3),  # exactly the Acc@0.3 threshold
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),  # empty union -> 0, not NaN
        ((10, 10, 0, 0), (0, 0, 10, 10), 0.0),  # inverted corners have no area (Eq. 3 max(0, .))
    ],
)
def test_iou_cases(a: tuple, b: tuple, expected: float) -> None:
    assert iou(Box(*a), Box(*b)) == pytest.approx(expected)


@given(any_boxes, any_boxes)
def test_iou_symmetric_and_bounded(a: Box, b: Box) -> None:
    v = iou(a, b)
    assert 0.0 <= v <= 1.0
    assert v == pytest.approx(iou(b, a))


@given(proper_boxes())
def test_iou_identity_is_one(a: Box) -> None:
    assert iou(a, a) == pytest.approx(1.0)


@given(proper_boxes(), proper_boxes())
def test_iou_matches_definition(a: Box, b: Box) -> None:
    inter = intersection_area(a, b)
    assert inter <= min(a.area, b.area) + 1e-6
    assert iou(a, b) == pytest.approx(inter / (a.area + b.area - inter))


@given(proper_boxes(), st.floats(min_value=-300, max_value=300), st.floats(min_value=-300, max_value=300))
def test_iou_translation_invariant(a: Box, dx: float, dy: float) -> None:
    b = Box(a.x1 + 3, a.y1 - 2, a.x2 + 7, a.y2 + 1)
    shift = lambda z: Box(z.x1 + dx, z.y1 + dy, z.x2 + dx, z.y2 + dy)  # noqa: E731
    assert iou(shift(a), shift(b)) == pytest.approx(iou(a, b), abs=1e-6)


def test_geometry() -> None:
    b = Box(2, 4, 8, 12)
    assert (b.width, b.height, b.area) == (6.0, 8.0, 48.0)
    assert b.center == (5.0, 8.0)
    assert b.diagonal == 10.0
    assert not b.is_zero
    assert not b.is_degenerate
    assert ZERO_BOX.is_zero
    assert ZERO_BOX.is_degenerate
    assert ZERO_BOX.area == 0.0
    assert Box(5, 5, 5, 9).is_degenerate  # a line
    assert Box(8, 12, 2, 4).area == 0.0
    assert Box(8, 12, 2, 4).normalized() == b
    assert center_distance(Box(0, 0, 2, 2), Box(3, 4, 5, 6)) == pytest.approx(math.hypot(3, 4))
    assert b.as_int_list() == [2, 4, 8, 12]
    assert Box(1.4, 1.6, 2.5, 3.5).as_int_list() == [1, 2, 2, 4]


def test_clip() -> None:
    assert Box(-5, -5, 50, 20).clip(40, 30) == Box(0, 0, 40, 20)
    assert Box(50, 50, 60, 60).clip(40, 30).is_degenerate  # fully outside collapses to a degenerate box


@pytest.mark.parametrize(
    "bad",
    [(1, 2, 3), (1, 2, 3, 4, 5), ("a", 0, 1, 1), (float("nan"), 0, 1, 1), (0, 0, float("inf"), 1), (None, 0, 1, 1)],
)
def test_malformed_boxes_raise_box_error(bad: tuple) -> None:
    with pytest.raises(BoxError):
        Box.from_seq(bad)


def test_from_seq_converts_to_float() -> None:
    b = Box.from_seq(np.array([1, 2, 3, 4], dtype=np.int64))
    assert b == Box(1.0, 2.0, 3.0, 4.0)
    assert isinstance(b.x1, float)


def test_box_from_mask_exclusive_edges() -> None:
    m = np.zeros((20, 30), np.uint8)
    m[5:9, 10:17] = 255
    assert box_from_mask(m) == Box(10, 5, 17, 9)
    assert box_from_mask(m).area == float((m > 0).sum())  # tight box of a rectangle = its pixel count
    assert box_from_mask(np.zeros((4, 4), bool)) == ZERO_BOX
