"""The single-anomaly evaluation protocol of the paper (IV-A): per-sample IoU, Acc@0.3, F1@0.3,
mIoU, mIoU_ano, mIoU_nor — per category, per subset and overall — and the Tables III-V layout.

Every number in the SDK's reports comes from here, so a model, a golden engine and another
family's raw answers are all scored by exactly the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .boxes import Box, iou
from .errors import BoxError, DatasetError

#: IoU threshold of Acc@0.3 and F1@0.3 (and the DCLR tau default).
IOU_THRESHOLD = 0.3
#: IoU is a ratio of floats: a box built to have IoU exactly 0.3 may compute as 0.29999999999999993.
_EPS = 1e-9


def sample_iou(pred: Box | None, gt: Box, valid: bool = True) -> float:
    """IoU of one sample under the protocol's rules.

    Invalid output -> 0. Normal sample (``gt`` is the zero box): 1 if the prediction is the zero box
    or no box from a valid answer, else 0. Anomalous sample: IoU with ``gt`` (0 for no/zero box).

    >>> sample_iou(Box(0, 0, 10, 10), Box(5, 0, 15, 10))
    0.3333333333333333
    >>> sample_iou(None, Box(0, 0, 0, 0))
    1.0
    >>> sample_iou(Box(0, 0, 0, 0), Box(0, 0, 0, 0), valid=False)
    0.0
    """
    if not valid:
        return 0.0
    if pred is None or pred.is_zero:
        return 1.0 if gt.is_zero else 0.0
    return 0.0 if gt.is_zero else iou(pred, gt)


def is_positive(pred: Box | None, valid: bool = True) -> bool:
    """A *positive prediction* (the F1 convention): a valid, non-zero box."""
    return valid and pred is not None and not pred.is_zero


@dataclass(frozen=True)
class Record:
    """One scored sample: prediction and ground truth in the same pixel frame."""

    pred: Box | None
    gt: Box
    valid: bool = True
    category: str = "default"
    subset: str = "default"
    id: str | None = None
    #: image-level anomaly score (higher = more anomalous), for AUROC / F1-max; None when unknown
    score: float | None = None
    #: ``outcome.Verdict`` value (OK / NG / NOT_INSPECTED) for the confusion matrix; derived when None
    verdict: str | None = None


@dataclass(frozen=True)
class ImageLevel:
    """Beyond the paper's table: threshold-free image-level figures from the scores.

    ``auroc`` / ``f1_max`` (with the score ``threshold`` that reaches it, anomalib's adaptive
    threshold) over the samples that were inspected and carry a score; ``confusion`` counts truth
    (``good`` / ``defective``) x verdict (``OK`` / ``NG`` / ``NOT_INSPECTED``) over all samples.
    """

    auroc: float | None
    f1_max: float | None
    threshold: float | None
    n_scored: int
    confusion: dict[str, dict[str, int]]


@dataclass(frozen=True)
class PixelLevel:
    """Pixel AUROC and PRO (per-region overlap, integrated up to ``fpr_limit`` and normalized: anomalib's
    definitions) from anomaly maps and ground-truth masks."""

    auroc: float | None
    pro: float | None
    fpr_limit: float
    n_images: int


@dataclass(frozen=True)
class Metrics:
    """Rates are fractions in [0, 1]; ``None`` where undefined (e.g. mIoU_ano without anomalous samples)."""

    acc30: float | None
    f1: float | None
    miou: float | None
    miou_ano: float | None
    miou_nor: float | None
    n: int
    n_ano: int
    n_nor: int
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True)
class Report:
    overall: Metrics
    per_category: dict[str, Metrics]
    per_subset: dict[str, Metrics]
    #: Mean of the per-category rates (the paper's "(Avg.)" rows of Table V); counts are totals.
    average: Metrics
    #: category -> subset it belongs to (the first one seen), to group rows like Table V.
    category_subset: dict[str, str] = field(default_factory=dict)
    threshold: float = IOU_THRESHOLD
    image: ImageLevel | None = None
    pixel: PixelLevel | None = None


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def compute_metrics(records: Iterable[Record], threshold: float = IOU_THRESHOLD) -> Metrics:
    """Metrics of one group of samples.

    TP = anomalous sample with a positive prediction of IoU >= threshold; FP = any other positive
    prediction; FN = anomalous sample that is not a TP; F1 = 2TP / (2TP + FP + FN), 0 without TP.

    >>> recs = [Record(Box(0, 0, 10, 10), Box(0, 0, 10, 10)), Record(Box(0, 0, 0, 0), Box(0, 0, 0, 0)),
    ...         Record(Box(0, 0, 5, 5), Box(0, 0, 0, 0)), Record(None, Box(20, 20, 30, 30))]
    >>> m = compute_metrics(recs)
    >>> (m.acc30, m.f1, m.miou, m.miou_ano, m.miou_nor, m.tp, m.fp, m.fn)
    (0.5, 0.5, 0.5, 0.5, 0.5, 1, 1, 1)
    """
    ious: list[float] = []
    ano: list[float] = []
    nor: list[float] = []
    tp = fp = fn = 0
    for r in records:
        s = sample_iou(r.pred, r.gt, r.valid)
        ious.append(s)
        hit = s >= threshold - _EPS
        if r.gt.is_zero:
            nor.append(s)
            fp += is_positive(r.pred, r.valid)
        else:
            ano.append(s)
            if is_positive(r.pred, r.valid) and hit:
                tp += 1
            else:
                fn += 1
                fp += is_positive(r.pred, r.valid)
    n = len(ious)
    acc = sum(1 for s in ious if s >= threshold - _EPS) / n if n else None
    f1 = (2 * tp / (2 * tp + fp + fn) if tp else 0.0) if n else None
    return Metrics(acc, f1, _mean(ious), _mean(ano), _mean(nor), n, len(ano), len(nor), tp, fp, fn)


def macro_average(groups: Iterable[Metrics]) -> Metrics:
    """Unweighted mean of each rate over the groups that define it (Table V's "(Avg.)" rows)."""
    groups = list(groups)

    def avg(name: str) -> float | None:
        return _mean([v for g in groups if (v := getattr(g, name)) is not None])

    total = {k: sum(getattr(g, k) for g in groups) for k in ("n", "n_ano", "n_nor", "tp", "fp", "fn")}
    return Metrics(avg("acc30"), avg("f1"), avg("miou"), avg("miou_ano"), avg("miou_nor"), **total)


def _as_record(item: Record | Mapping[str, Any], index: int) -> Record:
    if isinstance(item, Record):
        return item
    if isinstance(item, Mapping):
        try:
            gt = item["gt"]
            pred = item.get("pred")
            return Record(
                pred=pred if pred is None or isinstance(pred, Box) else Box.from_seq(pred),
                gt=gt if isinstance(gt, Box) else Box.from_seq(gt),
                valid=bool(item.get("valid", True)),
                category=str(item.get("category", "default")),
                subset=str(item.get("subset", "default")),
                id=None if item.get("id") is None else str(item["id"]),
                score=None if item.get("score") is None else float(item["score"]),
                verdict=None if item.get("verdict") is None else str(item["verdict"]),
            )
        except (KeyError, TypeError, ValueError, BoxError) as e:
            raise DatasetError(
                f"record {index} is malformed ({e!r}); expected keys gt, pred, valid, category, subset"
            ) from e
    raise DatasetError(f"record {index} is a {type(item).__name__}; expected a metrics.Record or a mapping")


def evaluate(records: Iterable[Record | Mapping[str, Any]], threshold: float = IOU_THRESHOLD) -> Report:
    """Score all samples: overall, per category, per subset, and the macro average over categories.

    >>> rep = evaluate([Record(Box(0, 0, 10, 10), Box(0, 0, 10, 10), category="a"),
    ...                 Record(None, Box(0, 0, 0, 0), category="b")])
    >>> rep.overall.acc30, rep.per_category["a"].miou_ano, rep.per_category["b"].miou_nor
    (1.0, 1.0, 1.0)
    """
    recs = [_as_record(r, i) for i, r in enumerate(records)]
    by_cat: dict[str, list[Record]] = {}
    by_sub: dict[str, list[Record]] = {}
    cat_sub: dict[str, str] = {}
    for r in recs:
        by_cat.setdefault(r.category, []).append(r)
        by_sub.setdefault(r.subset, []).append(r)
        cat_sub.setdefault(r.category, r.subset)
    per_category = {c: compute_metrics(rs, threshold) for c, rs in sorted(by_cat.items())}
    return Report(
        overall=compute_metrics(recs, threshold),
        per_category=per_category,
        per_subset={s: compute_metrics(rs, threshold) for s, rs in sorted(by_sub.items())},
        average=macro_average(per_category.values()),
        category_subset=cat_sub,
        threshold=threshold,
        image=image_level(recs),
    )


def _verdict(r: Record) -> str:
    if r.verdict is not None:
        return r.verdict
    if not r.valid:
        return "NOT_INSPECTED"
    return "NG" if is_positive(r.pred, r.valid) else "OK"


def image_level(records: Iterable[Record]) -> ImageLevel:
    """Image AUROC and F1-max (scikit-learn's curves) plus the truth x verdict confusion matrix.

    >>> recs = [Record(None, Box(0, 0, 0, 0), score=0.1), Record(Box(0, 0, 4, 4), Box(0, 0, 4, 4), score=0.9),
    ...         Record(None, Box(0, 0, 4, 4), valid=False, score=0.0)]
    >>> m = image_level(recs)
    >>> m.auroc, m.f1_max, m.confusion["defective"]["NOT_INSPECTED"]
    (1.0, 1.0, 1)
    """
    recs = list(records)
    confusion = {t: {v: 0 for v in ("OK", "NG", "NOT_INSPECTED")} for t in ("good", "defective")}
    labels: list[int] = []
    scores: list[float] = []
    for r in recs:
        verdict = _verdict(r)
        confusion["good" if r.gt.is_zero else "defective"][verdict] += 1
        if verdict != "NOT_INSPECTED" and r.score is not None and math.isfinite(r.score):
            labels.append(0 if r.gt.is_zero else 1)
            scores.append(float(r.score))
    auroc = f1_max = thr = None
    if len(set(labels)) == 2:
        from sklearn.metrics import precision_recall_curve, roc_auc_score

        auroc = float(roc_auc_score(labels, scores))
        precision, recall, thresholds = precision_recall_curve(labels, scores)
        f1 = [2 * p * q / (p + q) if p + q > 0 else 0.0 for p, q in zip(precision[:-1], recall[:-1], strict=True)]
        best = max(range(len(f1)), key=f1.__getitem__)
        f1_max, thr = float(f1[best]), float(thresholds[best])
    return ImageLevel(auroc, f1_max, thr, len(scores), confusion)


def pixel_level(
    maps: Iterable[Any],
    masks: Iterable[Any],
    fpr_limit: float = 0.3,
    max_pixels: int = 2_000_000,
) -> PixelLevel:
    """Pixel AUROC and PRO over anomaly maps (float HxW) and their ground-truth masks (non-zero = defect).

    PRO follows anomalib: at each threshold, the mean over ground-truth regions of the share of
    the region above the threshold, plotted against the false-positive rate on defect-free pixels,
    integrated up to ``fpr_limit`` and divided by it. Pixels are subsampled evenly beyond ``max_pixels``.

    >>> import numpy as np
    >>> m = np.zeros((8, 8), np.float32); m[2:4, 2:4] = 1.0
    >>> r = pixel_level([m], [m > 0])
    >>> round(r.auroc, 3), round(r.pro, 3)
    (1.0, 1.0)
    """
    import cv2
    import numpy as np
    from sklearn.metrics import roc_auc_score, roc_curve

    flat_s: list[Any] = []
    flat_y: list[Any] = []
    regions: list[tuple[int, Any]] = []  # (index into the concatenated pixels, region label array)
    offset = 0
    n = 0
    for amap, mask in zip(maps, masks, strict=True):
        a = np.asarray(amap, np.float32)
        y = np.asarray(mask) > 0
        if a.shape != y.shape:
            raise DatasetError(f"anomaly map {a.shape} and mask {y.shape} differ in size; resize the mask to the image")
        n += 1
        flat_s.append(a.ravel())
        flat_y.append(y.ravel())
        count, labels = cv2.connectedComponents(y.astype(np.uint8), connectivity=8)
        if count > 1:
            regions.append((offset, labels.ravel()))
        offset += a.size
    if not n:
        return PixelLevel(None, None, fpr_limit, 0)
    s_all = np.concatenate(flat_s)
    y_all = np.concatenate(flat_y)
    if y_all.all() or not y_all.any():
        return PixelLevel(None, None, fpr_limit, n)
    step = max(1, s_all.size // max_pixels)
    auroc = float(roc_auc_score(y_all[::step], s_all[::step]))
    fpr, _, thresholds = roc_curve(y_all[::step], s_all[::step], drop_intermediate=True)
    keep = fpr <= fpr_limit
    fpr, thresholds = fpr[keep], thresholds[keep]
    if len(thresholds) > 256:  # enough points for the integral
        idx = np.linspace(0, len(thresholds) - 1, 256).round().astype(int)
        fpr, thresholds = fpr[idx], thresholds[idx]
    pro_curve = np.zeros(len(thresholds))
    n_regions = 0
    for start, labels in regions:
        scores = s_all[start : start + labels.size]
        for label in range(1, int(labels.max()) + 1):
            region = scores[labels == label]
            n_regions += 1
            pro_curve += (region[None, :] >= thresholds[:, None]).mean(axis=1)
    pro_curve /= max(n_regions, 1)
    fpr_ext = np.append(fpr, fpr_limit)
    pro_ext = np.append(pro_curve, pro_curve[-1] if len(pro_curve) else 0.0)
    pro = float(np.trapezoid(pro_ext, fpr_ext) / fpr_limit)
    return PixelLevel(auroc, pro, fpr_limit, n)


_COLUMNS = (
    ("acc30", "Acc@{t} (%)"),
    ("f1", "F1 (%)"),
    ("miou", "mIoU (%)"),
    ("miou_ano", "mIoU_ano (%)"),
    ("miou_nor", "mIoU_nor (%)"),
)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100.0 * v:.2f}"


def render_table(report: Report, title: str | None = None) -> str:
    """A Markdown table in the layout of the paper's Tables III-V (percentages, two decimals).

    Rows: every category (grouped by subset when there are several, each group closed by a
    "<subset> (Avg.)" row as in Table V), then "Average" (mean over categories) and "Overall"
    (all samples pooled, as in Tables III-IV). Undefined values print as "–".
    """
    t = f"{report.threshold:g}"
    heads = ["Subset", "Category", *(h.format(t=t) for _, h in _COLUMNS), "N", "N_ano", "N_nor"]

    def row(subset: str, name: str, m: Metrics) -> list[str]:
        return [subset, name, *(_pct(getattr(m, k)) for k, _ in _COLUMNS), str(m.n), str(m.n_ano), str(m.n_nor)]

    rows: list[list[str]] = []
    subsets = sorted(set(report.category_subset.values()))
    for sub in subsets:
        cats = [c for c in report.per_category if report.category_subset.get(c) == sub]
        rows += [row(sub, c, report.per_category[c]) for c in cats]
        if len(subsets) > 1 and len(cats) > 1:
            rows.append(row(sub, f"{sub} (Avg.)", macro_average(report.per_category[c] for c in cats)))
    rows.append(row("", "Average", report.average))
    rows.append(row("", "Overall", report.overall))
    widths = [max(3, len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    right = [False, False] + [True] * (len(heads) - 2)

    def fmt(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True))
            + " |"
        )

    sep = "| " + " | ".join(("-" * (w - 1) + ":") if r else "-" * w for w, r in zip(widths, right, strict=True)) + " |"
    lines = ([f"{title}", ""] if title else []) + [fmt(heads), sep, *(fmt(r) for r in rows)]
    return "\n".join(lines)


def render_beyond(report: Report) -> str:
    """What follows the paper's table: the protocol note, image AUROC / F1-max, the verdict
    confusion matrix and pixel figures."""
    out: list[str] = ["Paper's single-anomaly protocol: each sample is scored by its top defect only."]
    img = report.image
    if img is not None:
        if img.auroc is not None:
            out.append(
                f"Image AUROC {_pct(img.auroc)} %, F1-max {_pct(img.f1_max)} % at score {img.threshold:.4f} "
                f"({img.n_scored} scored samples)"
            )
        c = img.confusion
        out.append("Verdicts: truth \\ verdict | OK | NG | NOT_INSPECTED")
        for truth in ("good", "defective"):
            out.append(f"  {truth:<9} | {c[truth]['OK']} | {c[truth]['NG']} | {c[truth]['NOT_INSPECTED']}")
    if report.pixel is not None and report.pixel.auroc is not None:
        out.append(
            f"Pixel AUROC {_pct(report.pixel.auroc)} %, PRO@{report.pixel.fpr_limit:g} {_pct(report.pixel.pro)} % "
            f"({report.pixel.n_images} images with masks)"
        )
    return "\n".join(out)


def report_to_json(report: Report) -> dict[str, Any]:
    """JSON-ready dict (fractions, not percentages; ``null`` where undefined)."""
    return {
        "threshold": report.threshold,
        "overall": asdict(report.overall),
        "average": asdict(report.average),
        "per_category": {k: asdict(v) for k, v in report.per_category.items()},
        "per_subset": {k: asdict(v) for k, v in report.per_subset.items()},
        "category_subset": dict(report.category_subset),
        "protocol": "single anomaly per sample: the top defect is scored",
        "image": None if report.image is None else asdict(report.image),
        "pixel": None if report.pixel is None else asdict(report.pixel),
    }
