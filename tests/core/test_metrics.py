"""metrics: SPEC "Metrics" (paper IV-A) — per-sample IoU rules, Acc@0.3, F1@0.3, mIoU(_ano/_nor),
per category / subset, and the Tables III-V rendering."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from differad_edge.boxes import ZERO_BOX, Box
from differad_edge.errors import DatasetError
from differad_edge.metrics import (
    Metrics,
    Record,
    compute_metrics,
    evaluate,
    macro_average,
    render_table,
    report_to_json,
    sample_iou,
)

GT = Box(0, 0, 10, 10)


@pytest.mark.parametrize(
    ("pred", "gt", "valid", "expected"),
    [
        (GT, GT, True, 1.0),  # perfect box
        (Box(5, 0, 15, 10), GT, True, 1 / 3),  # plain IoU on anomalous samples
        (GT, GT, False, 0.0),  # invalid output -> 0 even if a box was recovered
        (None, GT, True, 0.0),  # no box on an anomalous sample
        (ZERO_BOX, GT, True, 0.0),  # "no anomaly" on an anomalous sample
        (ZERO_BOX, ZERO_BOX, True, 1.0),  # normal sample, zero box -> 1
        (None, ZERO_BOX, True, 1.0),  # normal sample, valid answer without a box -> 1
        (Box(1, 1, 2, 2), ZERO_BOX, True, 0.0),  # normal sample, any box -> 0
        (ZERO_BOX, ZERO_BOX, False, 0.0),  # normal sample, invalid output -> 0
        (None, ZERO_BOX, False, 0.0),
    ],
)
def test_sample_iou_rules(pred: Box | None, gt: Box, valid: bool, expected: float) -> None:
    assert sample_iou(pred, gt, valid) == pytest.approx(expected)


def test_f1_counts_follow_the_detection_convention() -> None:
    recs = [
        Record(GT, GT),  # TP
        Record(Box(0, 0, 3, 10), GT),  # IoU exactly 0.3 -> TP (>= threshold)
        Record(Box(0, 0, 2, 10), GT),  # IoU 0.2: positive but not a TP -> FP and FN
        Record(None, GT),  # missed -> FN
        Record(GT, GT, valid=False),  # invalid -> FN, not a positive
        Record(Box(1, 1, 5, 5), ZERO_BOX),  # box on a normal sample -> FP
        Record(ZERO_BOX, ZERO_BOX),  # correct normal: no count, IoU 1
    ]
    m = compute_metrics(recs)
    assert (m.tp, m.fp, m.fn) == (2, 2, 3)
    assert m.f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 3))
    assert m.acc30 == pytest.approx(3 / 7)  # two TPs + the correct normal
    assert m.miou == pytest.approx((1 + 0.3 + 0.2 + 0 + 0 + 0 + 1) / 7)
    assert m.miou_ano == pytest.approx((1 + 0.3 + 0.2) / 5)
    assert m.miou_nor == pytest.approx(0.5)
    assert (m.n, m.n_ano, m.n_nor) == (7, 5, 2)


def test_always_zero_box_model_is_mantis() -> None:
    """SPEC's check: always answering the zero box gives F1 = 0 and Acc@0.3 = share of normals (Table III)."""
    gts = [GT] * 13 + [ZERO_BOX] * 5
    m = compute_metrics([Record(ZERO_BOX, g) for g in gts])
    assert m.f1 == 0.0
    assert m.tp == 0
    assert m.acc30 == pytest.approx(5 / 18)
    assert m.miou == pytest.approx(5 / 18)
    assert m.miou_ano == 0.0
    assert m.miou_nor == 1.0


def test_empty_and_one_sided_groups_are_undefined_not_zero() -> None:
    empty = compute_metrics([])
    assert empty.n == 0
    assert empty.acc30 is None
    assert empty.f1 is None
    assert empty.miou is None
    only_normal = compute_metrics([Record(None, ZERO_BOX)])
    assert only_normal.miou_ano is None
    assert only_normal.miou_nor == 1.0


def test_threshold_is_configurable() -> None:
    recs = [Record(Box(0, 0, 5, 10), GT)]  # IoU 0.5
    assert evaluate(recs).overall.acc30 == 1.0
    assert evaluate(recs, threshold=0.7).overall.acc30 == 0.0


def _report():
    return evaluate(
        [
            Record(GT, GT, category="screw", subset="object"),
            Record(None, GT, category="screw", subset="object"),
            Record(ZERO_BOX, ZERO_BOX, category="screw", subset="object"),
            Record(GT, GT, category="pcb", subset="object"),
            Record(Box(0, 0, 5, 10), GT, category="carpet", subset="texture"),
            Record(Box(0, 0, 1, 1), ZERO_BOX, category="carpet", subset="texture"),
        ]
    )


def test_per_category_subset_overall_and_average() -> None:
    rep = _report()
    assert list(rep.per_category) == ["carpet", "pcb", "screw"]
    assert rep.per_category["screw"].acc30 == pytest.approx(2 / 3)
    assert rep.per_category["pcb"].miou_nor is None
    assert rep.per_subset["texture"].n == 2
    assert rep.per_subset["object"].n == 4
    assert rep.overall.n == 6
    assert rep.overall.acc30 == pytest.approx(4 / 6)
    # Average = unweighted mean over categories (Table V's "(Avg.)" rows), unlike Overall
    assert rep.average.acc30 == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    assert rep.average.miou_nor == pytest.approx((0.0 + 1.0) / 2)  # pcb has no normal sample
    assert rep.average.n == 6
    assert rep.category_subset == {"screw": "object", "pcb": "object", "carpet": "texture"}


def test_macro_average_skips_undefined() -> None:
    a = Metrics(1.0, 1.0, 1.0, 1.0, None, 1, 1, 0, 1, 0, 0)
    b = Metrics(0.0, 0.0, 0.5, None, 0.5, 2, 0, 2, 0, 1, 0)
    m = macro_average([a, b])
    assert (m.acc30, m.miou, m.miou_ano, m.miou_nor, m.n, m.fp) == (0.5, 0.75, 1.0, 0.5, 3, 1)


def test_render_table_layout() -> None:
    table = render_table(_report(), title="Demo")
    lines = table.splitlines()
    assert lines[0] == "Demo"
    header = lines[2]
    for col in ("Category", "Acc@0.3 (%)", "F1 (%)", "mIoU (%)", "mIoU_ano (%)", "mIoU_nor (%)"):
        assert col in header
    assert header.index("Acc@0.3") < header.index("F1") < header.index("mIoU (%)") < header.index("mIoU_ano")
    body = lines[4:]
    names = [r.split("|")[2].strip() for r in body]
    assert names == ["pcb", "screw", "object (Avg.)", "carpet", "Average", "Overall"]  # grouped by subset
    screw = [c.strip() for c in body[1].split("|")[1:-1]]
    assert screw[:7] == ["object", "screw", "66.67", "66.67", "66.67", "50.00", "100.00"]
    pcb = [c.strip() for c in body[0].split("|")[1:-1]]
    assert pcb[6] == "–"  # undefined mIoU_nor prints as a dash, as the paper's missing entries
    assert len({len(line) for line in lines[2:]}) == 1  # aligned columns


def test_report_to_json_is_serialisable_and_complete() -> None:
    rep = _report()
    data = json.loads(json.dumps(report_to_json(rep)))
    assert data["overall"]["acc30"] == pytest.approx(rep.overall.acc30)
    assert data["per_category"]["pcb"]["miou_nor"] is None
    assert set(data["per_subset"]) == {"object", "texture"}
    assert data["threshold"] == 0.3


def test_mappings_are_accepted_and_malformed_records_raise() -> None:
    rep = evaluate(
        [{"pred": [0, 0, 10, 10], "gt": [0, 0, 10, 10], "category": "a"}, {"pred": None, "gt": [0, 0, 0, 0]}]
    )
    assert rep.overall.acc30 == 1.0
    assert set(rep.per_category) == {"a", "default"}
    with pytest.raises(DatasetError, match="record 0"):
        evaluate([{"pred": None}])
    with pytest.raises(DatasetError, match="record 1"):
        evaluate([Record(None, GT), 42])  # type: ignore[list-item]
    with pytest.raises(DatasetError):
        evaluate([{"gt": [0, 0, 1]}])


box_st = st.one_of(
    st.none(),
    st.just(ZERO_BOX),
    st.builds(
        lambda x, y, w, h: Box(x, y, x + w, y + h),
        st.integers(0, 50),
        st.integers(0, 50),
        st.integers(1, 30),
        st.integers(1, 30),
    ),
)
record_st = st.builds(
    Record,
    box_st,
    st.one_of(st.just(ZERO_BOX), box_st.filter(lambda b: b is not None)),
    st.booleans(),
    st.sampled_from(["a", "b"]),
)


@given(st.lists(record_st, min_size=1, max_size=30))
def test_metric_invariants(recs: list[Record]) -> None:
    m = compute_metrics(recs)
    for v in (m.acc30, m.f1, m.miou, m.miou_ano, m.miou_nor):
        assert v is None or 0.0 <= v <= 1.0
    assert m.n == m.n_ano + m.n_nor == len(recs)
    assert m.tp + m.fn == m.n_ano  # every anomalous sample is a TP or an FN
    assert (m.f1 == 0.0) == (m.tp == 0)
    parts = (m.miou_ano or 0.0) * m.n_ano + (m.miou_nor or 0.0) * m.n_nor
    assert m.miou * m.n == pytest.approx(parts)  # mIoU is the sample-weighted mix of ano and nor
    assert m.acc30 * m.n >= m.tp  # every TP has IoU >= 0.3
