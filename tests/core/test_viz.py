"""viz: annotated images (pred red, GT green), side by side, heatmaps, contact sheets, report plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from differad_edge.boxes import ZERO_BOX, Box
from differad_edge.errors import ImageError
from differad_edge.images import load_image
from differad_edge.metrics import Record, evaluate
from differad_edge.viz import (
    GT_COLOR,
    PRED_COLOR,
    contact_sheet,
    draw_boxes,
    heatmap,
    overlay_heatmap,
    plot_report,
    side_by_side,
)


def _is(img: np.ndarray, y: int, x: int, color: tuple[int, int, int]) -> bool:
    return bool(np.abs(img[y, x].astype(int) - color).max() <= 40)


@pytest.fixture
def grey() -> np.ndarray:
    return np.full((200, 300, 3), 128, np.uint8)


def test_pred_red_gt_green_input_untouched(grey: np.ndarray) -> None:
    before = grey.copy()
    out = draw_boxes(grey, Box(150, 100, 250, 180), Box(20, 120, 100, 190), label="vlm", score=0.87)
    assert np.array_equal(grey, before)
    assert out.shape == grey.shape
    assert out.dtype == np.uint8
    assert _is(out, 140, 150, PRED_COLOR)
    assert _is(out, 179, 200, PRED_COLOR)
    assert _is(out, 150, 20, GT_COLOR)
    assert _is(out, 189, 60, GT_COLOR)
    assert _is(out, 140, 200, (128, 128, 128))  # inside stays unpainted
    assert (np.abs(out.astype(int) - 128).sum(axis=2) > 0).sum() > 4 * (100 + 80)  # boxes + label tags drawn


def test_label_text_changes_pixels(grey: np.ndarray) -> None:
    a = draw_boxes(grey, Box(150, 100, 250, 180), label="x", score=0.1)
    b = draw_boxes(grey, Box(150, 100, 250, 180), label="x", score=0.9)
    assert not np.array_equal(a, b)


def test_zero_prediction_is_tagged_and_nothing_boxed(grey: np.ndarray) -> None:
    out = draw_boxes(grey, ZERO_BOX)
    assert _is(out, 5, 5, PRED_COLOR)  # "no anomaly" tag in the corner
    assert _is(out, 150, 250, (128, 128, 128))
    assert np.array_equal(draw_boxes(grey, None), grey)  # nothing to say, nothing drawn


def test_boxes_outside_the_image_are_clipped(grey: np.ndarray) -> None:
    out = draw_boxes(grey, Box(-50, -50, 1000, 1000))
    assert _is(out, 100, 0, PRED_COLOR)
    assert _is(out, 100, 299, PRED_COLOR)


def test_side_by_side_layout(grey: np.ndarray) -> None:
    tgt = np.full((150, 120, 3), 60, np.uint8)
    out = side_by_side(grey, tgt, pred=Box(10, 10, 50, 50), gt=Box(60, 60, 100, 100), gap=6)
    bar = 200 // 12
    assert out.shape == (200 + bar, 300 + 6 + 120, 3)
    assert _is(out, bar + 30, 306 + 10, PRED_COLOR)
    assert _is(out, bar + 80, 306 + 60, GT_COLOR)
    assert _is(out, bar + 190, 306 + 50, (255, 255, 255))  # shorter target padded white
    no_titles = side_by_side(grey, grey, titles=("", ""))
    assert no_titles.shape == (200, 606, 3)


def test_heatmap_colours_and_errors() -> None:
    a = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (16, 1))
    hm = heatmap(a)
    assert hm.shape == (16, 64, 3)
    assert hm.dtype == np.uint8
    assert hm[0, 0, 2] > 100
    assert hm[0, 0, 0] < 50
    assert hm[0, -1, 0] > 100
    assert hm[0, -1, 2] < 50
    fixed = heatmap(a, vmin=0, vmax=10)  # a fixed range: 1.0 is low on a 0..10 scale
    assert fixed[0, -1, 2] > 100
    assert fixed[0, -1, 0] < 50
    flat = heatmap(np.full((8, 8), 3.0))
    assert (flat == flat[0, 0]).all()
    with pytest.raises(ImageError, match="NaN"):
        heatmap(np.array([[np.nan, 1.0]]))
    with pytest.raises(ImageError, match="2-D"):
        heatmap(np.zeros((2, 2, 3)))


def test_overlay_resizes_the_map(grey: np.ndarray) -> None:
    out = overlay_heatmap(grey, np.eye(10), alpha=0.5)
    assert out.shape == grey.shape
    assert not np.array_equal(out, grey)
    assert np.array_equal(overlay_heatmap(grey, np.eye(10), alpha=0.0), grey)


def test_contact_sheet() -> None:
    tiles = [np.full((20, 30, 3), v, np.uint8) for v in (10, 20, 30)] + [np.full((10, 10, 3), 40, np.uint8)]
    sheet = contact_sheet(tiles, cols=3, gap=2)
    assert sheet.shape == (2 * 20 + 2, 3 * 30 + 2 * 2, 3)
    assert sheet[0, 0, 0] == 10
    assert sheet[0, 32, 0] == 20
    assert sheet[22, 0, 0] == 40
    assert sheet[22, 15, 0] == 255
    with pytest.raises(ImageError):
        contact_sheet([])


def test_plot_report_writes_a_png(tmp_path: Path) -> None:
    rep = evaluate([Record(Box(0, 0, 5, 5), Box(0, 0, 5, 5), category="a"), Record(None, ZERO_BOX, category="b")])
    p = plot_report(rep, tmp_path / "plots" / "metrics.png", title="demo")
    img = load_image(p)
    assert img.shape[0] > 100
    assert img.shape[1] > 100
    assert img.std() > 5
