"""Annotated images people look at: predicted box (red) vs ground truth (green) with a label,
reference | target side by side, anomaly-map heatmaps, contact sheets, and a metrics bar plot.

Images are drawn with OpenCV on copies of uint8 RGB arrays (inputs are never modified);
matplotlib is used only for plots, imported lazily.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .boxes import Box
from .errors import ImageError
from .images import to_rgb8

if TYPE_CHECKING:
    from .metrics import Report
    from .outcome import Detection

PRED_COLOR = (230, 30, 30)  # RGB red
GT_COLOR = (30, 200, 60)  # RGB green
TEXT_COLOR = (255, 255, 255)
#: Verdict colours of annotated images, banners and terminals: OK green, NG red, NOT INSPECTED amber.
VERDICT_COLORS = {"OK": (30, 170, 60), "NG": (220, 30, 30), "NOT_INSPECTED": (245, 160, 0)}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _thickness(img: np.ndarray) -> int:
    return max(1, round(min(img.shape[:2]) / 200))


def _font_scale(img: np.ndarray) -> float:
    return max(0.35, min(img.shape[:2]) / 700)


def _put_label(img: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int]) -> None:
    """Text on a filled tag, kept inside the image (above the point if there is room, else below)."""
    scale, thick = _font_scale(img), max(1, _thickness(img) // 2)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    h, w = img.shape[:2]
    x = int(min(max(x, 0), max(w - tw - 4, 0)))
    top = y - th - base - 4
    if top < 0:
        top = min(y, h - th - base - 4)
    top = max(top, 0)
    cv2.rectangle(img, (x, top), (x + tw + 4, top + th + base + 4), color, -1)
    cv2.putText(img, text, (x + 2, top + th + 2), _FONT, scale, TEXT_COLOR, thick, cv2.LINE_AA)


def _draw_box(img: np.ndarray, box: Box, color: tuple[int, int, int], label: str) -> None:
    h, w = img.shape[:2]
    b = box.clip(w, h)
    x1, y1 = int(np.floor(b.x1)), int(np.floor(b.y1))
    x2, y2 = int(np.ceil(b.x2)) - 1, int(np.ceil(b.y2)) - 1  # boxes have exclusive right/bottom edges
    cv2.rectangle(img, (x1, y1), (max(x1, x2), max(y1, y2)), color, _thickness(img), cv2.LINE_AA)
    if label:
        _put_label(img, label, x1, y1, color)


def draw_boxes(
    img: np.ndarray,
    pred: Box | None,
    gt: Box | None = None,
    label: str = "",
    score: float | None = None,
    gt_label: str = "GT",
) -> np.ndarray:
    """A copy of ``img`` with the prediction in red (labelled ``label`` and ``score``) and the GT in green.

    Zero boxes are "no anomaly": nothing is drawn for them; a corner tag says "no anomaly" when the
    prediction is the zero box (or ``None`` with a label/score), so an empty result is never ambiguous.
    """
    out = to_rgb8(img, "rgb").copy()
    text = " ".join(t for t in (label, None if score is None else f"{score:.2f}") if t)
    if gt is not None and not gt.is_zero:
        _draw_box(out, gt, GT_COLOR, gt_label)
    if pred is not None and not pred.is_zero:
        _draw_box(out, pred, PRED_COLOR, text)
    elif pred is not None or text:
        _put_label(out, f"no anomaly{' ' + text if text else ''}", 2, 2, PRED_COLOR)
    return out


def verdict_banner(img: np.ndarray, detection: Detection, text: str = "") -> np.ndarray:
    """``img`` under a banner in the verdict's colour saying the verdict (and the reason or defect count).

    The banner makes a NOT_INSPECTED frame impossible to mistake for a good part at a glance.
    """
    verdict = detection.verdict.value
    if detection.not_inspected is not None:
        what = f"NOT INSPECTED: {detection.not_inspected.value}"
    elif detection.defects:
        what = f"NG: {len(detection.defects)} defect{'s' if len(detection.defects) > 1 else ''}"
    else:
        what = "OK"
    title = " ".join(t for t in (what, f"score {detection.score:.2f}", text) if t)
    base = to_rgb8(img, "rgb")
    bar = max(18, base.shape[0] // 14)
    top = np.zeros((bar, base.shape[1], 3), np.uint8)
    top[:] = VERDICT_COLORS[verdict]
    scale = max(0.4, bar / 40)
    cv2.putText(top, title, (4, int(bar * 0.72)), _FONT, scale, TEXT_COLOR, max(1, round(scale * 1.5)), cv2.LINE_AA)
    return np.vstack([top, base])


def draw_detection(
    img: np.ndarray,
    detection: Detection,
    gt: Box | None = None,
    heat: bool = True,
    text: str = "",
) -> np.ndarray:
    """The frame with every defect boxed (NG red, ranked), its anomaly map overlaid where the engine
    returned one, and the verdict banner on top."""
    out = to_rgb8(img, "rgb").copy()
    if heat and detection.anomaly_map is not None and detection.anomaly_map.shape[:2] == out.shape[:2]:
        out = overlay_heatmap(out, np.minimum(detection.anomaly_map, 2.0), vmin=0.0, vmax=2.0, alpha=0.4)
    if gt is not None and not gt.is_zero:
        _draw_box(out, gt, GT_COLOR, "GT")
    color = VERDICT_COLORS[detection.verdict.value]
    for rank, d in enumerate(detection.defects, 1):
        _draw_box(out, d.box, color, f"#{rank} {d.score:.2f}")
    return verdict_banner(out, detection, text)


def _titled(img: np.ndarray, title: str, bar: int) -> np.ndarray:
    if not title:
        return img
    top = np.full((bar, img.shape[1], 3), 32, np.uint8)
    scale = max(0.4, bar / 40)
    cv2.putText(top, title, (4, int(bar * 0.72)), _FONT, scale, TEXT_COLOR, 1, cv2.LINE_AA)
    return np.vstack([top, img])


def side_by_side(
    reference: np.ndarray,
    target: np.ndarray,
    pred: Box | None = None,
    gt: Box | None = None,
    label: str = "",
    score: float | None = None,
    titles: tuple[str, str] = ("reference", "target"),
    gap: int = 6,
) -> np.ndarray:
    """``reference | target`` on one canvas (heights matched), boxes drawn on the target."""
    ref = to_rgb8(reference, "rgb")
    tgt = draw_boxes(target, pred, gt, label, score)
    h = max(ref.shape[0], tgt.shape[0])

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, h - a.shape[0]), (0, 0), (0, 0)), constant_values=255)

    bar = max(16, h // 12) if any(titles) else 0
    ref, tgt = _titled(pad(ref), titles[0], bar), _titled(pad(tgt), titles[1], bar)
    sep = np.full((ref.shape[0], gap, 3), 255, np.uint8)
    return np.hstack([ref, sep, tgt])


def heatmap(
    arr: np.ndarray, vmin: float | None = None, vmax: float | None = None, colormap: int = cv2.COLORMAP_JET
) -> np.ndarray:
    """A 2-D anomaly map -> uint8 RGB colours (``vmin``/``vmax`` default to the map's range)."""
    a = np.asarray(arr, dtype=np.float32)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2 or a.size == 0:
        raise ImageError(f"heatmap needs a non-empty 2-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ImageError("heatmap input contains NaN or infinity; replace them before plotting")
    lo = float(a.min()) if vmin is None else float(vmin)
    hi = float(a.max()) if vmax is None else float(vmax)
    norm = np.zeros_like(a) if hi <= lo else np.clip((a - lo) / (hi - lo), 0.0, 1.0)
    bgr = cv2.applyColorMap(np.round(norm * 255).astype(np.uint8), colormap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay_heatmap(
    img: np.ndarray,
    arr: np.ndarray,
    alpha: float = 0.45,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """``img`` blended with ``heatmap(arr)`` (the map is resized to the image when sizes differ)."""
    base = to_rgb8(img, "rgb")
    hm = heatmap(arr, vmin=vmin, vmax=vmax)
    if hm.shape[:2] != base.shape[:2]:
        hm = cv2.resize(hm, (base.shape[1], base.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(base, 1.0 - alpha, hm, alpha, 0.0)


def contact_sheet(images: Sequence[np.ndarray], cols: int = 4, gap: int = 6) -> np.ndarray:
    """Tile images (padded to the largest) in a grid, for overviews of many cases."""
    if not images:
        raise ImageError("contact_sheet needs at least one image")
    tiles = [to_rgb8(i, "rgb") for i in images]
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, w - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
    cols = max(1, min(cols, len(tiles)))
    rows = -(-len(tiles) // cols)
    sheet = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = t
    return sheet


def plot_report(report: Report, path: str | os.PathLike, title: str = "") -> Path:
    """Bar chart of Acc@0.3 / F1 / mIoU per category (plus Overall), saved atomically as PNG."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .fileio import atomic_write_bytes

    names = [*report.per_category, "Overall"]
    groups = [*report.per_category.values(), report.overall]
    keys = (("acc30", f"Acc@{report.threshold:g}"), ("f1", "F1"), ("miou", "mIoU"))
    x = np.arange(len(names))
    fig = Figure(figsize=(max(4.0, 1.2 * len(names) + 2), 3.6), dpi=100)  # no pyplot: no global state
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, (attr, lab) in enumerate(keys):
        vals = [100.0 * (getattr(m, attr) or 0.0) for m in groups]
        ax.bar(x + (k - 1) * 0.27, vals, 0.27, label=lab)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.set_title(title or "Localization metrics")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
