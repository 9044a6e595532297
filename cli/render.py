"""Annotated images and result lines shared by the subcommands (drawing itself is ``viz``'s job)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..boxes import Box
from ..engines import Detection


def annotated_pair(
    reference: np.ndarray,
    target: np.ndarray,
    pred: Box | None,
    gt: Box | None = None,
    label: str = "",
    score: float | None = None,
) -> np.ndarray:
    """Reference beside the target with the predicted (red) and true (green) box drawn on the target."""
    from .. import viz

    return viz.side_by_side(reference, target, pred, gt, label=label, score=score)


def annotated_inspection(
    reference: np.ndarray,
    frame: np.ndarray,
    detection: Detection,
    gt: Box | None = None,
) -> np.ndarray:
    """reference | frame with every defect and the verdict banner | anomaly-map overlay (when the
    engine returned one): what a person looks at to trust or question a verdict."""
    from .. import viz

    panels = [viz.draw_detection(frame, detection, gt=gt, heat=False)]
    if detection.anomaly_map is not None:
        panels.append(viz.draw_detection(frame, detection, heat=True, text="deviation / tolerance"))
    ref = viz.verdict_banner(reference, detection, "reference")
    h = max(p.shape[0] for p in (ref, *panels))
    padded = [np.pad(p, ((0, h - p.shape[0]), (0, 6), (0, 0)), constant_values=255) for p in (ref, *panels)]
    return np.hstack(padded)


def unique_name(stem: str, used: set[str], ext: str = ".png") -> str:
    """``stem.png``, or ``stem_2.png`` ... when two inputs share a file name."""
    name, i = f"{stem}{ext}", 1
    while name in used:
        i += 1
        name = f"{stem}_{i}{ext}"
    used.add(name)
    return name


def median_timings(results: Iterable[Any]) -> dict[str, float]:
    """Median milliseconds per stage over results that carry ``timings_ms`` (detections, inspections)."""
    stages: dict[str, list[float]] = {}
    for result in results:
        for stage, ms in result.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    return {stage: round(statistics.median(v), 3) for stage, v in sorted(stages.items())}
