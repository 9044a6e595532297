"""coords: the 0-1000 model scale <-> pixels, and PixelTransform chains (resize, crop, warps)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from differad_edge.boxes import ZERO_BOX, Box
from differad_edge.coords import MODEL_SCALE, PixelTransform, from_model_scale, to_model_scale
from differad_edge.errors import BoxError
from differad_edge.parsing import box_problem

sides = st.integers(min_value=16, max_value=1000)


@st.composite
def frame_and_box(draw: st.DrawFn, max_side: int = 1000, min_extent: float = 0.2) -> tuple[int, int, Box]:
    w, h = draw(st.integers(16, max_side)), draw(st.integers(16, max_side))
    assume(w != h)  # non-square frames are where x/y mix-ups show
    x1 = draw(st.floats(0, w - min_extent))
    y1 = draw(st.floats(0, h - min_extent))
    x2 = draw(st.floats(x1 + min_extent, w))
    y2 = draw(st.floats(y1 + min_extent, h))
    return w, h, Box(x1, y1, x2, y2)


def _max_err(a: Box, b: Box) -> float:
    return max(abs(u - v) for u, v in zip(a.as_tuple(), b.as_tuple(), strict=True))


def test_model_scale_examples() -> None:
    assert to_model_scale(Box(80, 40, 160, 120), 800, 400) == Box(100, 100, 200, 300)
    assert from_model_scale(Box(100, 100, 200, 300), 800, 400) == Box(80, 40, 160, 120)
    assert to_model_scale(Box(0, 0, 800, 400), 800, 400) == Box(0, 0, MODEL_SCALE, MODEL_SCALE)


def test_zero_box_means_no_anomaly_in_both_directions() -> None:
    assert to_model_scale(ZERO_BOX, 640, 480) is ZERO_BOX
    assert from_model_scale(ZERO_BOX, 640, 480) is ZERO_BOX
    assert PixelTransform.scale(2, 3).apply_box(ZERO_BOX) is ZERO_BOX


def test_out_of_frame_boxes_are_clipped() -> None:
    assert to_model_scale(Box(-10, -10, 900, 500), 800, 400) == Box(0, 0, 1000, 1000)
    assert from_model_scale(Box(-5, 0, 1200, 500), 800, 400) == Box(0, 0, 800, 200)


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (-4, 8)])
def test_bad_image_size_raises(size: tuple[int, int]) -> None:
    with pytest.raises(BoxError):
        to_model_scale(Box(1, 1, 2, 2), *size)
    with pytest.raises(BoxError):
        from_model_scale(Box(1, 1, 2, 2), *size)


@pytest.mark.parametrize(
    ("box", "size"),
    [
        (Box(0, 0, 0.3, 0.3), (1920, 1080)),  # sub-unit defect at the origin must not become "no anomaly"
        (Box(2.88, 0, 4.8, 10), (1920, 1080)),  # ends at 1.5 and 2.5 units: banker's rounding collapses them
        (Box(1919.8, 1079.8, 1920, 1080), (1920, 1080)),  # sub-unit defect in the far corner
    ],
)
def test_tiny_boxes_stay_valid_model_answers(box: Box, size: tuple[int, int]) -> None:
    m = to_model_scale(box, *size)
    assert not m.is_zero
    assert box_problem(m) is None


@given(frame_and_box())
def test_model_scale_box_is_always_a_valid_answer(fb: tuple[int, int, Box]) -> None:
    w, h, box = fb
    m = to_model_scale(box, w, h)
    assert box_problem(m) is None
    assert not m.is_zero
    assert all(float(v).is_integer() for v in m.as_tuple())


@given(frame_and_box(), sides, sides)
def test_round_trip_through_resize_within_one_pixel(fb: tuple[int, int, Box], mw: int, mh: int) -> None:
    """Camera frame -> model input resize -> 0-1000 label -> back to the frame: within 1 px."""
    w, h, box = fb
    to_input = PixelTransform.resize((w, h), (mw, mh))
    label = to_model_scale(to_input.apply_box(box, clip_to=(mw, mh)), mw, mh)
    back = to_input.inverse().apply_box(from_model_scale(label, mw, mh), clip_to=(w, h))
    assert _max_err(back, box) <= 1.0 + 1e-6


@given(frame_and_box(max_side=4000, min_extent=8.0))
def test_round_trip_error_is_half_a_model_unit(fb: tuple[int, int, Box]) -> None:
    """For boxes spanning several units the only error is rounding: half a unit per axis."""
    w, h, box = fb
    back = from_model_scale(to_model_scale(box, w, h), w, h)
    for (a, b), unit in zip(zip(back.as_tuple(), box.as_tuple(), strict=True), (w, h, w, h), strict=True):
        assert abs(a - b) <= 0.5 * unit / MODEL_SCALE + 1e-6


@st.composite
def homographies(draw: st.DrawFn) -> PixelTransform:
    """Well-conditioned warps like the alignment step produces: rotation, scale, shear, shift, mild perspective."""
    ang = draw(st.floats(-0.3, 0.3))
    s = draw(st.floats(0.5, 2.0))
    sh = draw(st.floats(-0.2, 0.2))
    tx, ty = draw(st.floats(-200, 200)), draw(st.floats(-200, 200))
    px, py = draw(st.floats(-2e-4, 2e-4)), draw(st.floats(-2e-4, 2e-4))
    c, si = np.cos(ang), np.sin(ang)
    m = np.array([[s * c, -s * si + sh, tx], [s * si, s * c, ty], [px, py, 1.0]])
    return PixelTransform(m)


@given(homographies(), st.lists(st.tuples(st.floats(0, 800), st.floats(0, 600)), min_size=1, max_size=8))
def test_pixel_transform_inverse_round_trip(t: PixelTransform, pts: list[tuple[float, float]]) -> None:
    p = np.array(pts)
    back = t.inverse().apply_points(t.apply_points(p))
    np.testing.assert_allclose(back, p, atol=1e-6)
    assert t.then(t.inverse()).is_identity


@given(homographies(), homographies())
def test_then_composes_in_order(a: PixelTransform, b: PixelTransform) -> None:
    p = np.array([[10.0, 20.0], [300.0, 40.0], [123.0, 456.0]])
    np.testing.assert_allclose(a.then(b).apply_points(p), b.apply_points(a.apply_points(p)), rtol=1e-9, atol=1e-6)


def test_resize_crop_chain_maps_boxes_exactly() -> None:
    # 1280x720 frame, crop at (100, 50), then resize the 640x480 crop to 320x320
    chain = PixelTransform.crop(100, 50).then(PixelTransform.resize((640, 480), (320, 320)))
    b = chain.apply_box(Box(300, 200, 420, 290))
    assert b.as_tuple() == pytest.approx((100, 100, 160, 160))
    assert chain.inverse().apply_box(b).as_tuple() == pytest.approx((300, 200, 420, 290))


def test_apply_box_of_a_rotation_is_the_corner_hull() -> None:
    rot90 = PixelTransform(np.array([[0.0, -1.0, 100.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    b = rot90.apply_box(Box(10, 20, 30, 60))
    assert b.as_tuple() == pytest.approx((40, 10, 80, 30))
    assert rot90.apply_box(Box(10, 20, 30, 60), clip_to=(50, 50)).as_tuple() == pytest.approx((40, 10, 50, 30))


def test_affine_2x3_is_promoted_and_identity_detected() -> None:
    t = PixelTransform(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert t.matrix.shape == (3, 3)
    assert t.is_identity
    assert PixelTransform.identity().is_identity
    assert not PixelTransform.translate(1, 0).is_identity


@pytest.mark.parametrize("m", [np.eye(2), np.full((3, 3), np.nan), np.zeros((4, 4))])
def test_bad_matrices_raise(m: np.ndarray) -> None:
    with pytest.raises(BoxError):
        PixelTransform(m)


def test_singular_and_infinite_maps_raise() -> None:
    with pytest.raises(BoxError, match="singular"):
        PixelTransform(np.zeros((3, 3))).inverse()
    to_inf = PixelTransform(np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0]]))  # w = x: x = 0 maps to infinity
    with pytest.raises(BoxError, match="infinity"):
        to_inf.apply_points(np.array([[0.0, 5.0]]))
    with pytest.raises(BoxError):
        PixelTransform.resize((0, 10), (10, 10))
