"""Golden-template engine: finds drawn defects, stays silent on good parts, honours every option."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from differad_edge.boxes import Box, iou
from differad_edge.engines import Reference
from differad_edge.engines.golden import GoldenConfig, GoldenEngine
from differad_edge.errors import ConfigError, ImageError

from .parts import draw_blob, draw_scratch, good_copy, make_product, rigid, warp

SIZE = 256
DEFECTS = [
    ("dark blob", lambda im: draw_blob(im, (90, 150), 9, (20, 20, 20))),
    ("bright blob", lambda im: draw_blob(im, (170, 80), 7, (250, 250, 250))),
    ("colour stain", lambda im: draw_blob(im, (60, 60), 10, (200, 60, 60))),
    ("scratch", lambda im: draw_scratch(im, (120, 200), (180, 170), (15, 15, 15))),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("kind", "draw"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_finds_drawn_defects(seed, kind, draw):
    ref = make_product(SIZE, seed=seed)
    rng = np.random.default_rng(seed)
    engine = GoldenEngine()
    handle = engine.prepare(Reference(ref))
    target = good_copy(ref, rng, noise=3.0, brightness=6.0)
    gt = draw(target)
    det = engine.detect(handle, target)
    assert det.anomaly, f"{kind}: missed ({det.reason})"
    assert iou(det.box, gt) >= 0.5, f"{kind}: box {det.box} vs ground truth {gt}"
    assert 0.5 < det.score < 1.0
    assert det.engine == "golden"
    assert det.valid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silent_on_good_parts(seed):
    ref = make_product(SIZE, seed=seed)
    rng = np.random.default_rng(100 + seed)
    engine = GoldenEngine()
    handle = engine.prepare(Reference(ref))
    goods = [
        good_copy(ref, rng, noise=3.0),  # sensor noise
        good_copy(ref, rng, noise=2.0, brightness=25.0),  # brighter light
        good_copy(ref, rng, noise=2.0, brightness=-25.0),  # dimmer light
        good_copy(warp(ref, rigid(SIZE, 0.0, 0.6, -0.4)), rng, noise=2.0),  # residual sub-pixel shift
        good_copy(warp(ref, rigid(SIZE, 0.3, 0.0, 0.0)), rng, noise=2.0),  # residual rotation
    ]
    for i, good in enumerate(goods):
        det = engine.detect(handle, good)
        assert not det.anomaly, f"good part {i} flagged at {det.box} (score {det.score:.3f})"
        assert det.score < 0.75


def test_variation_model_tolerates_what_varies_between_good_parts():
    ref = make_product(SIZE, seed=4)
    rng = np.random.default_rng(4)
    # A region that legitimately varies a lot between good parts (e.g. a printed date code).
    goods = []
    for _ in range(8):
        g = good_copy(ref, rng, noise=2.0)
        g[40:70, 150:220] = np.clip(g[40:70, 150:220].astype(int) + rng.integers(-40, 41), 0, 255)
        goods.append(g)
    probe = good_copy(ref, rng, noise=2.0)
    probe[40:70, 150:220] = np.clip(probe[40:70, 150:220].astype(int) + 38, 0, 255)

    single = GoldenEngine()
    assert single.detect(single.prepare(Reference(ref)), probe).anomaly  # one image: flagged
    engine = GoldenEngine(method="mean_std")
    reference = engine.build_reference(goods, product_id="date-code")
    assert reference.mean is not None
    assert float(reference.spread[50, 180].max()) > 10
    handle = engine.prepare(reference)
    assert not engine.detect(handle, probe).anomaly  # learned: this region varies
    bad = probe.copy()
    gt = draw_blob(bad, (80, 180), 8, (10, 10, 10))
    det = engine.detect(handle, bad)
    assert det.anomaly
    assert iou(det.box, gt) >= 0.5


@pytest.mark.parametrize("channels", ["rgb", "gray"])
def test_score_is_the_peak_deviation_over_its_tolerance(channels):
    """The score's peak ratio, computed with OpenCV, equals its definition written in numpy: the
    largest of (t - center) / bright and (center - t) / dark over the blob, or over the cared-for
    image when there is no blob."""
    ref = make_product(SIZE, seed=7)
    engine = GoldenEngine(channels=channels, bright_threshold=20, dark_threshold=35)
    handle = engine.prepare(Reference(ref))
    s = handle
    rng = np.random.default_rng(3)
    frame = good_copy(ref, rng, noise=4.0)
    box = draw_blob(frame, (120, 90), 10, (255, 255, 255))
    t = engine._target(frame, s.size)
    t = t if channels == "rgb" else cv2.cvtColor(t, cv2.COLOR_RGB2GRAY)
    if engine.config.blur > 0:
        t = cv2.GaussianBlur(t, (0, 0), engine.config.blur)
    d = t.astype(np.float64) - s.center
    ratio = np.where(d > 0, d * s.inv_bright, -d * -s.neg_inv_dark)
    ratio = ratio.max(axis=2) if ratio.ndim == 3 else ratio
    whole = ratio[s.care > 0].max()
    assert engine._peak_ratio(t, s, None, None) == pytest.approx(whole, rel=1e-5)
    x1, y1, x2, y2 = box.as_int_list()
    region = rng.random((y2 - y1, x2 - x1)) > 0.5
    inside = ratio[y1:y2, x1:x2][region].max()
    assert engine._peak_ratio(t, s, box, region) == pytest.approx(inside, rel=1e-5)


def test_bright_and_dark_thresholds_are_separate():
    ref = make_product(SIZE, seed=0)
    rng = np.random.default_rng(0)
    dark = good_copy(ref, rng, noise=1.0)
    dark_box = draw_blob(dark, (90, 150), 9, (5, 5, 5))
    bright = good_copy(ref, rng, noise=1.0)
    bright_box = draw_blob(bright, (170, 80), 9, (255, 255, 255))
    only_bright = GoldenEngine(dark_threshold=255, brightness="none")
    h = only_bright.prepare(Reference(ref))
    assert not only_bright.detect(h, dark).anomaly
    assert iou(only_bright.detect(h, bright).box, bright_box) >= 0.5
    only_dark = GoldenEngine(bright_threshold=255, brightness="none")
    h = only_dark.prepare(Reference(ref))
    assert not only_dark.detect(h, bright).anomaly
    assert iou(only_dark.detect(h, dark).box, dark_box) >= 0.5


def test_care_mask_and_border_switch_pixels_off():
    ref = make_product(SIZE, seed=1)
    target = ref.copy()
    draw_blob(target, (60, 60), 10, (0, 0, 0))
    care = np.full((SIZE, SIZE), 255, np.uint8)
    care[40:80, 40:80] = 0
    engine = GoldenEngine()
    assert engine.detect(engine.prepare(Reference(ref)), target).anomaly
    assert not engine.detect(engine.prepare(Reference(ref, care_mask=care)), target).anomaly
    via_config = GoldenEngine(care_mask=care)
    assert not via_config.detect(via_config.prepare(Reference(ref)), target).anomaly

    edge = ref.copy()
    edge[:, :6] = 0  # a dark strip at the image border (vignetting, fixture edge)
    assert GoldenEngine(border=0).detect(GoldenEngine(border=0).prepare(Reference(ref)), edge).anomaly
    wide = GoldenEngine(border=8)
    assert not wide.detect(wide.prepare(Reference(ref)), edge).anomaly


def test_min_area_and_morphology_drop_specks():
    ref = make_product(SIZE, seed=2)
    target = ref.copy()
    target[100:102, 100:102] = 0  # a 4-pixel speck
    draw_blob(target, (200, 200), 3, (0, 0, 0))  # a ~29-pixel dot
    engine = GoldenEngine(open_size=0, min_area=1)
    det = engine.detect(engine.prepare(Reference(ref)), target)
    assert det.anomaly
    strict = GoldenEngine(open_size=0, min_area=60)
    det = strict.detect(strict.prepare(Reference(ref)), target)
    assert not det.anomaly
    assert det.notes  # seen, but below min_area
    assert det.score > 0.5


def test_rgb_sees_colour_only_defects_gray_does_not():
    ref = np.full((64, 64, 3), 120, np.uint8)
    target = ref.copy()
    # Same luminance, different colour: 0.299 R + 0.587 G + 0.114 B stays ~120.
    target[20:40, 20:40] = (200, 80, 121)
    rgb, gray = GoldenEngine(channels="rgb"), GoldenEngine(channels="gray")
    assert rgb.detect(rgb.prepare(Reference(ref)), target).anomaly
    assert not gray.detect(gray.prepare(Reference(ref)), target).anomaly


def test_detect_reports_stage_timings():
    ref = make_product(SIZE, seed=0)
    target = ref.copy()
    draw_blob(target, (90, 150), 9, (0, 0, 0))
    engine = GoldenEngine()
    det = engine.detect(engine.prepare(Reference(ref)), target)
    assert {"diff", "morphology", "components", "score"} <= set(det.timings_ms)
    assert all(v >= 0 for v in det.timings_ms.values())


def test_target_size_mismatch_is_a_clear_image_error():
    engine = GoldenEngine()
    handle = engine.prepare(Reference(make_product(64)))
    with pytest.raises(ImageError, match="align"):
        engine.detect(handle, make_product(128))
    with pytest.raises(ImageError, match="uint8 RGB"):
        engine.detect(handle, np.zeros((64, 64), np.uint8))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"abs_threshold": -1},
        {"k": float("nan")},
        {"bright_threshold": 300},
        {"dark_threshold": "5"},  # a string from a YAML/ROS option: a ConfigError, not a TypeError
        {"border": -2},
        {"open_size": 1.5},
        {"channels": "hsv"},
        {"method": "max"},
        {"brightness": "auto"},
    ],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ConfigError):
        GoldenConfig(**kwargs)


def test_unknown_override_lists_the_known_options():
    with pytest.raises(ConfigError, match="abs_threshold"):
        GoldenEngine(threshold=3)
    assert GoldenEngine(GoldenConfig(k=2.0), border=0).config.k == 2.0


# -- real-camera behaviour (issue 15): lighting, thin scratches, fragments, the warp seam -------------
def _lit(img: np.ndarray, gain: float, offset: float, gradient: float) -> np.ndarray:
    h, w = img.shape[:2]
    ramp = 1.0 + gradient * (np.arange(w, dtype=np.float32) - w / 2) / (w / 2)
    return np.clip(img.astype(np.float32) * (gain * ramp)[None, :, None] + offset, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1])
def test_gain_and_gradient_light_are_not_defects(seed):
    ref = make_product(SIZE, seed=seed)
    rng = np.random.default_rng(seed)
    good = _lit(good_copy(ref, rng, noise=2.0), 1.12, -8.0, 0.12)
    local = GoldenEngine()
    assert local.config.brightness == "local"
    assert not local.detect(local.prepare(Reference(ref)), good).anomaly
    offset_only = GoldenEngine(brightness="offset")  # what the engine did before: the gain reads as defects
    assert offset_only.detect(offset_only.prepare(Reference(ref)), good).anomaly
    bad = good.copy()
    gt = draw_blob(bad, (90, 150), 8, (30, 30, 30))
    det = local.detect(local.prepare(Reference(ref)), bad)
    assert det.anomaly
    assert iou(det.box, gt) >= 0.5


def test_thin_scratch_survives_where_an_opening_erases_it():
    ref = make_product(SIZE, seed=3)
    target = good_copy(ref, np.random.default_rng(3), noise=2.0)
    mask = np.zeros((SIZE, SIZE), np.float32)
    cv2.line(mask, (60, 200), (190, 150), 1.0, 1, cv2.LINE_AA)  # one pixel wide
    target = np.clip(target * (1 - 0.7 * mask[:, :, None]), 0, 255).astype(np.uint8)
    target = cv2.GaussianBlur(target, (0, 0), 0.6)  # the optics
    ys, xs = np.nonzero(mask > 0.3)
    gt = Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    engine = GoldenEngine()
    det = engine.detect(engine.prepare(Reference(ref)), target)
    assert det.anomaly, (det.box, gt)
    assert iou(det.box, gt) >= 0.5, (det.box, gt)
    opened = GoldenEngine(open_size=3, hysteresis=1.0)  # the former post-processing
    d2 = opened.detect(opened.prepare(Reference(ref)), target)
    assert not d2.anomaly or iou(d2.box, gt) < 0.3


def test_fragments_of_one_defect_are_one_box_and_defects_stay_ranked():
    ref = make_product(SIZE, seed=4)
    target = good_copy(ref, np.random.default_rng(4), noise=2.0)
    for x in range(60, 180, 20):  # a dashed scratch: 6 fragments 5 px apart
        cv2.line(target, (x, 100), (x + 14, 100), (10, 10, 10), 2)
    far = draw_blob(target, (200, 210), 6, (250, 250, 250))
    engine = GoldenEngine()
    det = engine.detect(engine.prepare(Reference(ref)), target)
    assert len(det.defects) == 2, det.defects
    boxes = sorted((d.box for d in det.defects), key=lambda b: b.x1)
    assert iou(boxes[0], Box(60, 99, 175, 102)) >= 0.5
    assert iou(boxes[1], far) >= 0.5
    assert [d.score for d in det.defects] == sorted((d.score for d in det.defects), reverse=True)
    split = GoldenEngine(merge_px=0, close_size=0)
    assert len(split.detect(split.prepare(Reference(ref)), target).defects) > 2
    capped = GoldenEngine(max_defects=1)
    assert len(capped.detect(capped.prepare(Reference(ref)), target).defects) == 1


def test_nothing_is_judged_on_the_warp_seam():
    ref = make_product(SIZE, seed=5)
    target = good_copy(ref, np.random.default_rng(5), noise=2.0)
    target[:, -20:] = 0  # where the warped frame has no pixels (fill="black")
    valid = np.full((SIZE, SIZE), 255, np.uint8)
    valid[:, -20:] = 0
    engine = GoldenEngine()
    handle = engine.prepare(Reference(ref))
    assert engine.detect(handle, target).anomaly
    assert not engine.detect(handle, target, valid=valid).anomaly
    gt = draw_blob(target, (100, 100), 8, (0, 0, 0))
    det = engine.detect(handle, target, valid=valid)
    assert det.anomaly
    assert iou(det.box, gt) >= 0.5
    with pytest.raises(ImageError, match="valid mask"):
        engine.detect(handle, target, valid=valid[:10])


def test_build_reference_normalizes_the_lighting_of_every_good_part():
    """The spread must measure the part, not the lamp: several lightings, one tight model."""
    ref = make_product(SIZE, seed=6)
    rng = np.random.default_rng(6)
    goods = [ref] + [
        _lit(good_copy(ref, rng, noise=2.0), g, o, gr)
        for g, o, gr in ((1.1, 5, 0.1), (0.9, -6, -0.08), (1.05, 0, 0.12), (0.92, 8, 0.0))
    ]
    spread = GoldenEngine().build_reference(goods).spread
    raw = GoldenEngine(brightness="none").build_reference(goods).spread
    assert float(np.median(spread)) < 0.5 * float(np.median(raw))


def test_overexposed_highlights_are_not_defects_but_bright_defects_are():
    ref = make_product(SIZE, seed=7)
    ref[30:110, 30:110] = (250, 249, 248)  # a white label
    rng = np.random.default_rng(7)
    bright = _lit(good_copy(ref, rng, noise=2.0), 1.12, 4.0, 0.0)  # the label clips at 255
    assert (bright[40:100, 40:100] == 255).mean() > 0.5
    engine = GoldenEngine()
    handle = engine.prepare(Reference(ref))
    assert not engine.detect(handle, bright).anomaly
    gt = draw_blob(bright, (180, 190), 8, (255, 255, 255))  # saturated, but where the part is dark
    det = engine.detect(handle, bright)
    assert det.anomaly
    assert iou(det.box, gt) >= 0.5
