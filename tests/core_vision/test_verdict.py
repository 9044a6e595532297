"""Every frame ends in an explicit verdict, on real photographs (scikit-image's bundled images):
NOT_INSPECTED with its reason where the frame cannot be judged, never an answer that reads like OK."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from differad_edge.boxes import Box, iou
from differad_edge.engines import Reference
from differad_edge.engines.golden import GoldenEngine
from differad_edge.inspector import Inspector
from differad_edge.outcome import Defect, Detection, Reason, Verdict, decide_verdict
from differad_edge.quality import QualityLimits
from differad_edge.store import ReferenceStore


def _photo() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[::2, ::2])  # 256x256 RGB, a real photograph


def _good(ref: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(ref + rng.normal(0, 2, ref.shape), 0, 255).astype(np.uint8)


def _mono(img: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def ref() -> np.ndarray:
    return _photo()


def _inspect(ref: np.ndarray, frame: np.ndarray, **kw) -> Detection:
    return Inspector(GoldenEngine(), **kw).inspect_pair(Reference(ref), frame).detection


def test_decide_verdict_is_the_one_rule() -> None:
    d = Defect(Box(0, 0, 4, 4), 0.9, 16)
    assert decide_verdict([], None) is Verdict.OK
    assert decide_verdict([d], None) is Verdict.NG
    # a reason not to judge wins over anything found
    assert decide_verdict([d], Reason.IMAGE_QUALITY) is Verdict.NOT_INSPECTED
    refused = Detection.refuse(Reason.INVALID_ANSWER, "no box", engine="vlm")
    assert refused.verdict is Verdict.NOT_INSPECTED
    assert not refused.valid
    assert not refused.anomaly
    row = refused.to_json()
    assert row["verdict"] == "NOT_INSPECTED"
    assert row["reason"] == "invalid_answer"
    assert row["message"] == "no box"


def test_good_part_is_ok_and_a_moved_good_part_too(ref: np.ndarray) -> None:
    assert _inspect(ref, _good(ref)).verdict is Verdict.OK
    m = cv2.getRotationMatrix2D((128, 128), 1.5, 1.0)
    m[:, 2] += (3, -2)
    moved = cv2.warpAffine(_good(ref, 1), m, (256, 256), borderMode=cv2.BORDER_REFLECT)
    assert _inspect(ref, moved).verdict is Verdict.OK


def test_two_defects_give_two_boxes(ref: np.ndarray) -> None:
    frame = _good(ref)
    cv2.circle(frame, (60, 200), 7, (0, 0, 0), -1)
    cv2.line(frame, (180, 40), (210, 60), (255, 255, 255), 3)
    det = _inspect(ref, frame)
    assert det.verdict is Verdict.NG
    assert len(det.defects) == 2
    spots = [Box(53, 193, 68, 208), Box(178, 38, 213, 63)]
    for spot in spots:
        assert max(iou(d.box, spot) for d in det.defects) >= 0.4
    assert det.defects[0].score >= det.defects[1].score  # ranked
    assert det.box == det.defects[0].box  # the paper's single-anomaly protocol takes the top one


def test_max_defects_bounds_the_list_and_says_so(ref: np.ndarray) -> None:
    frame = _good(ref)
    for k in range(5):
        cv2.circle(frame, (30 + 45 * k, 225), 6, (0, 0, 0), -1)
    det = Inspector(GoldenEngine(max_defects=2)).inspect_pair(Reference(ref), frame).detection
    assert len(det.defects) == 2
    assert any("highest-scoring reported" in n for n in det.notes)


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("unrelated image", lambda r: np.ascontiguousarray(data.coffee()[:256, :256]), Reason.ALIGNMENT_FAILED),
        ("cropped frame", lambda r: _good(r)[0:160, 0:160].copy(), Reason.PARTIAL_VIEW),
        ("zoomed frame", lambda r: cv2.resize(_good(r)[40:216, 40:216], (256, 256)), Reason.PARTIAL_VIEW),
        ("blurred", lambda r: cv2.GaussianBlur(_good(r), (0, 0), 3), Reason.IMAGE_QUALITY),
        ("over-exposed", lambda r: np.clip(_good(r).astype(int) * 3, 0, 255).astype(np.uint8), Reason.IMAGE_QUALITY),
        ("dark", lambda r: (_good(r) * 0.15).astype(np.uint8), Reason.IMAGE_QUALITY),
        ("empty station", lambda r: np.full_like(r, 90), Reason.IMAGE_QUALITY),
    ],
)
def test_frames_that_cannot_be_judged_are_not_inspected(ref: np.ndarray, name: str, make, reason: Reason) -> None:
    det = _inspect(ref, make(ref))
    assert det.verdict is Verdict.NOT_INSPECTED, name
    assert det.not_inspected is reason, (name, det.message)
    assert det.message
    assert det.defects == []  # never a frame-sized "defect"


def test_quality_check_can_be_switched_off_and_limits_come_from_the_reference(ref: np.ndarray) -> None:
    blurred = cv2.GaussianBlur(_good(ref), (0, 0), 3)
    assert _inspect(ref, blurred, quality=None).verdict is not Verdict.NOT_INSPECTED
    lenient = Reference(ref, metadata={"quality": {"min_focus_ratio": 0.0}})
    det = Inspector(GoldenEngine()).inspect_pair(lenient, blurred).detection
    assert det.not_inspected is not Reason.IMAGE_QUALITY


def test_wrong_size_without_alignment(ref: np.ndarray) -> None:
    det = _inspect(ref, cv2.resize(_good(ref), (200, 180)), align=None)
    assert det.not_inspected is Reason.SIZE_MISMATCH


def test_bad_frame_array_is_not_inspected(ref: np.ndarray) -> None:
    det = _inspect(ref, np.zeros((0, 5, 3), np.uint8))
    assert det.not_inspected is Reason.BAD_FRAME


def test_engine_failure_is_not_inspected(ref: np.ndarray) -> None:
    class Broken(GoldenEngine):
        def detect(self, handle, target):
            raise RuntimeError("sensor driver returned garbage")

    det = Inspector(Broken()).inspect_pair(Reference(ref), _good(ref)).detection
    assert det.not_inspected is Reason.ENGINE_ERROR
    assert "garbage" in det.message


def test_unknown_product_is_not_inspected(tmp_path) -> None:
    det = Inspector(GoldenEngine(), store=ReferenceStore(tmp_path)).inspect(_photo(), "ghost").detection
    assert det.not_inspected is Reason.NO_REFERENCE


def _labelled_part() -> np.ndarray:
    """The photograph with a saturated red label whose luminance matches what lies beneath it."""
    part = _photo().copy()
    patch = part[20:60, 150:230].astype(np.float32)
    lum = patch @ np.array([0.299, 0.587, 0.114], np.float32)
    red = np.zeros_like(patch)
    red[..., 0] = np.clip(lum / 0.299 * 0.6, 0, 255)
    red[..., 1] = np.clip((lum - 0.299 * red[..., 0]) / (0.587 + 0.114), 0, 255)
    red[..., 2] = red[..., 1]
    part[20:60, 150:230] = red.astype(np.uint8)
    return part


def test_mono_frame_against_colour_reference_finds_the_scratch_and_no_label_false_alarm() -> None:
    ref = _labelled_part()
    frame = _mono(_good(ref))
    cv2.line(frame, (40, 120), (90, 150), (250, 250, 250), 3)  # the real defect: a bright scratch
    scratch = Box(38, 118, 93, 153)
    label = Box(150, 20, 230, 60)
    det = _inspect(ref, frame)
    assert det.verdict is Verdict.NG
    assert any("channel_mismatch" in n for n in det.notes)  # the result says it compared in gray
    assert max(iou(d.box, scratch) for d in det.defects) >= 0.4
    assert all(iou(d.box, label) == 0 for d in det.defects)  # the coloured label is no defect
    # without the check, the same pair compared in RGB is a false alarm on the label: what the check prevents
    rgb = Inspector(GoldenEngine(), on_channel_mismatch="gray")
    rgb._checks = lambda prepared, f: (None, False, [])  # type: ignore[method-assign]
    naive = rgb.inspect_pair(Reference(ref), frame).detection
    assert any(iou(d.box, label) > 0 for d in naive.defects)


def test_channel_mismatch_can_be_refused(ref: np.ndarray) -> None:
    det = _inspect(ref, _mono(_good(ref)), on_channel_mismatch="refuse")
    assert det.not_inspected is Reason.CHANNEL_MISMATCH
    colour_frame_mono_ref = _inspect(_mono(ref), _good(ref), on_channel_mismatch="refuse")
    assert colour_frame_mono_ref.not_inspected is Reason.CHANNEL_MISMATCH


def test_anomaly_map_on_request(ref: np.ndarray) -> None:
    frame = _good(ref)
    cv2.circle(frame, (60, 200), 7, (0, 0, 0), -1)
    assert _inspect(ref, frame).anomaly_map is None
    det = Inspector(GoldenEngine(anomaly_map=True)).inspect_pair(Reference(ref), frame).detection
    amap = det.anomaly_map
    assert amap is not None
    assert amap.shape == ref.shape[:2]
    assert amap[200, 60] > 1.0  # beyond the tolerance at the defect
    assert np.median(amap) < 0.5  # within it elsewhere


def test_quality_limits_are_validated() -> None:
    from differad_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="max_gain"):
        QualityLimits(max_gain=0.5)
    with pytest.raises(ConfigError, match="min_coverage"):
        Inspector(GoldenEngine(), min_coverage=1.5)
