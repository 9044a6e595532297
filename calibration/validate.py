"""Validate a candidate on frames it has never seen, and tune the golden thresholds on them.

Held-out good frames measure the false-alarm rate; known-defect frames with ground-truth boxes (in
the frame's pixels) measure the detection rate. Every ``(k, abs_threshold)`` pair of the grid is
tried; the tightest one that meets the target false-alarm rate (best detection rate first) is
loosened by a safety margin, because a handful of held-out frames only bounds the noise seen so
far. The verdict, measured at that final setting, goes to ``store.set_validation``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from differad_edge.boxes import Box, iou
from differad_edge.engines.base import Reference
from differad_edge.errors import BoxError, CalibrationError
from differad_edge.fileio import sha256_file
from differad_edge.lru import LRU

from .config import ValidateConfig


@dataclass
class Sample:
    """A held-out frame: good (``gt=None``) or with a known defect (``gt`` in frame pixels)."""

    name: str
    image: np.ndarray
    gt: Box | None = None
    file: str | None = None  # where it was read from, and its sha256: the audit trail of a run
    sha256: str | None = None

    @property
    def kind(self) -> str:
        return "good" if self.gt is None else "defect"

    def input_record(self) -> dict[str, Any]:
        """What the history keeps about this input (issue 16: which frames each run judged)."""
        return {"name": self.name, "kind": self.kind, "file": self.file, "sha256": self.sha256}


@dataclass
class SampleResult:
    sample: Sample
    aligned: np.ndarray | None
    align_ok: bool
    align_score: float
    align_reason: str | None
    gt_ref: Box | None  # ground truth mapped into reference pixels
    valid: np.ndarray | None = None  # reference pixels the frame covers (None = all): the seam is not judged
    outcomes: dict[tuple[float, float], Any] = field(default_factory=dict)  # (k, abs) -> Detection

    def alarm(self, key: tuple[float, float]) -> bool:
        return not self.align_ok or bool(self.outcomes[key].anomaly)

    def found(self, key: tuple[float, float], min_iou: float) -> bool:
        det = self.outcomes.get(key)
        return bool(
            self.align_ok
            and det is not None
            and det.anomaly
            and self.gt_ref is not None
            and iou(det.box, self.gt_ref) >= min_iou
        )


@dataclass
class GridPoint:
    k: float
    abs_threshold: float
    false_alarm_rate: float
    detection_rate: float | None
    tolerance: float  # mean per-pixel tolerance over the care mask (lower = more sensitive)

    @property
    def key(self) -> tuple[float, float]:
        return (self.k, self.abs_threshold)


@dataclass
class ValidationResult:
    product_id: str
    version: str
    passed: bool
    reasons: list[str]
    chosen: GridPoint | None  # the setting to use (tightest passing x margin), measured
    golden: dict[str, Any]
    grid: list[GridPoint]
    samples: list[SampleResult]
    config: ValidateConfig
    tightest: GridPoint | None = None  # the tightest grid setting meeting the false-alarm target
    report_path: Path | None = None

    @property
    def judged(self) -> GridPoint | None:
        """The setting the frames are judged at: the chosen one, or - when no setting met the target -
        the one with the fewest false alarms, so a FAILED run still names the frames that failed it."""
        if self.chosen is not None:
            return self.chosen
        return min(self.grid, key=lambda g: (g.false_alarm_rate, g.tolerance), default=None)

    def failing_frames(self) -> dict[str, list[str]]:
        """Frames that count against the candidate at the judged setting, by cause."""
        point = self.judged
        key = point.key if point else None
        return {
            "false_alarms": [s.sample.name for s in self.samples if s.sample.gt is None and key and s.alarm(key)],
            "missed": [
                s.sample.name
                for s in self.samples
                if s.sample.gt is not None and key and not s.found(key, self.config.iou)
            ],
            "alignment_failures": [s.sample.name for s in self.samples if not s.align_ok],
        }

    def to_json(self) -> dict[str, Any]:
        good = [s for s in self.samples if s.sample.gt is None]
        defects = [s for s in self.samples if s.sample.gt is not None]
        failing = self.failing_frames()
        judged = self.judged
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "golden": self.golden,
            "false_alarm_rate": None if self.chosen is None else self.chosen.false_alarm_rate,
            "detection_rate": None if self.chosen is None else self.chosen.detection_rate,
            "target_false_alarm_rate": self.config.target_false_alarm_rate,
            "margin": self.config.margin,
            "tightest": None
            if self.tightest is None
            else {"k": self.tightest.k, "abs_threshold": self.tightest.abs_threshold},
            "min_detection_rate": self.config.min_detection_rate,
            "iou": self.config.iou,
            "n_good": len(good),
            "n_defect": len(defects),
            "judged_at": None if judged is None else {"k": judged.k, "abs_threshold": judged.abs_threshold},
            **failing,
            "failing_frames": sorted({n for names in failing.values() for n in names}),
            "grid": [
                {
                    "k": g.k,
                    "abs_threshold": g.abs_threshold,
                    "false_alarm_rate": g.false_alarm_rate,
                    "detection_rate": g.detection_rate,
                    "tolerance": round(g.tolerance, 4),
                }
                for g in self.grid
            ],
            "report": str(self.report_path) if self.report_path else None,
        }


def _mean_tolerance(reference: Reference, k: float, abs_threshold: float) -> float:
    """Mean of max(abs, k * spread) over inspected pixels: orders grid points by sensitivity."""
    spread = reference.spread
    s = (
        np.zeros(reference.image.shape[:2], np.float32)
        if spread is None
        else (spread.max(axis=2) if spread.ndim == 3 else spread)
    )
    tol = np.maximum(abs_threshold, k * s)
    mask = reference.care_mask
    return float(tol[mask > 0].mean() if mask is not None and mask.any() else tol.mean())


def _evaluate(
    reference: Reference, results: list[SampleResult], k: float, abs_t: float, config: ValidateConfig
) -> GridPoint:
    """Run the golden engine at one setting on every aligned sample; false-alarm and detection rates."""
    from differad_edge.engines.golden import GoldenEngine

    engine = GoldenEngine(**{**config.golden, "k": k, "abs_threshold": abs_t})
    handle = engine.prepare(reference)
    for r in results:
        if r.align_ok:
            r.outcomes[(k, abs_t)] = engine.detect(handle, r.aligned, valid=r.valid)
    engine.close()
    goods = [r for r in results if r.sample.gt is None]
    bads = [r for r in results if r.sample.gt is not None]
    fa = sum(r.alarm((k, abs_t)) for r in goods) / len(goods)
    dr = sum(r.found((k, abs_t), config.iou) for r in bads) / len(bads) if bads else None
    return GridPoint(k, abs_t, fa, dr, _mean_tolerance(reference, k, abs_t))


def align_samples(
    reference: Reference, samples: list[Sample], motion: str = "auto", progress: bool = False
) -> list[SampleResult]:
    """Register each held-out frame once; every threshold of the grid reuses the aligned image.

    The motion model stored with the reference (chosen by ``build``) wins over ``motion``: validation
    must register frames exactly as the live inspector will."""
    from differad_edge.alignment import MOTIONS, AlignConfig, Aligner, stored_motion

    stored = stored_motion(reference.metadata)
    chosen = stored if stored is not None else motion if motion in MOTIONS else AlignConfig().motion
    aligner = Aligner(reference.image, AlignConfig(motion=chosen))
    size = reference.size
    iterator: Any = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, desc="aligning held-out frames", unit="frame")
    out = []
    for s in iterator:
        a = aligner.align(s.image)
        gt_ref = a.warp.apply_box(s.gt, clip_to=size) if s.gt is not None else None
        out.append(SampleResult(s, a.aligned if a.ok else None, a.ok, float(a.score), a.reason, gt_ref, valid=a.valid))
    return out


def validate_reference(
    reference: Reference,
    samples: list[Sample],
    config: ValidateConfig | None = None,
    *,
    motion: str = "auto",
    progress: bool = False,
) -> ValidationResult:
    """Run the golden engine over the threshold grid on held-out frames and pick thresholds.

    The chosen setting is the tightest one meeting the false-alarm target (best detection rate
    first), loosened by ``config.margin``; the verdict is measured at that final setting.
    """
    config = config or ValidateConfig()
    good = [s for s in samples if s.gt is None]
    defects = [s for s in samples if s.gt is not None]
    if not good:
        raise CalibrationError("validation needs held-out good frames; capture with --holdout > 0 or pass --good DIR")
    results = align_samples(reference, samples, motion, progress)
    grid_keys = list(itertools.product(sorted(config.k_grid), sorted(config.abs_grid)))
    iterator: Any = grid_keys
    if progress:
        from tqdm import tqdm

        iterator = tqdm(grid_keys, desc="tuning thresholds", unit="setting")
    grid = [_evaluate(reference, results, k, abs_t, config) for k, abs_t in iterator]
    feasible = [g for g in grid if g.false_alarm_rate <= config.target_false_alarm_rate + 1e-12]
    tightest = (
        min(feasible, key=lambda g: (-(g.detection_rate or 0.0), g.tolerance, g.k, g.abs_threshold))
        if feasible
        else None
    )
    # The few held-out frames only bound the noise seen so far: loosen the tightest passing setting
    # by the safety margin and judge the candidate at the thresholds that will actually be used.
    chosen = None
    if tightest is not None:
        m = config.margin
        chosen = _evaluate(reference, results, round(tightest.k * m, 4), round(tightest.abs_threshold * m, 4), config)
    reasons = []
    if len(good) < config.min_good_frames:
        reasons.append(f"only {len(good)} held-out good frames (need {config.min_good_frames}); capture more")
    if chosen is None or chosen.false_alarm_rate > config.target_false_alarm_rate + 1e-12:
        best = min(grid, key=lambda g: g.false_alarm_rate)
        reasons.append(
            f"no threshold meets the false-alarm target {config.target_false_alarm_rate:.1%} "
            f"(best {best.false_alarm_rate:.1%} at k={best.k}, abs={best.abs_threshold}); "
            "check the held-out frames in the report, mask unstable regions or rebuild from more frames"
        )
    elif defects and (chosen.detection_rate or 0.0) < config.min_detection_rate:
        reasons.append(
            f"detection rate {chosen.detection_rate:.1%} < required {config.min_detection_rate:.1%} at the "
            f"false-alarm target (k={chosen.k}, abs={chosen.abs_threshold}, margin {config.margin}); the reference "
            "is too loose or the defects too faint (more stable frames, a tighter care mask)"
        )
    golden = {} if chosen is None else {**config.golden, "k": chosen.k, "abs_threshold": chosen.abs_threshold}
    return ValidationResult(
        product_id=reference.product_id,
        version=reference.version,
        passed=not reasons,
        reasons=reasons,
        chosen=chosen,
        golden=golden,
        grid=grid,
        samples=results,
        config=config,
        tightest=tightest,
    )


#: The golden engine prepared for the report's heat maps (one reference and setting at a time).
_PREPARED: LRU[tuple[int, str, str], tuple[Any, Any]] = LRU(1)


def residual_map(
    reference: Reference,
    aligned: np.ndarray,
    k: float,
    abs_threshold: float,
    golden: dict[str, Any] | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Per-pixel deviation / tolerance for the report's heat maps (1 = at the threshold, 0 outside
    the care mask and where the frame has no pixels).

    It is the golden engine's own ``anomaly_map`` at ``(k, abs_threshold)`` (plus the fixed
    ``golden`` overrides of the validation), so the picture shows the threshold the engine applies:
    lighting normalization, edge (shift) tolerance and bright / dark thresholds included.
    """
    from differad_edge.engines.golden import GoldenEngine

    settings = {**(golden or {}), "k": k, "abs_threshold": abs_threshold, "anomaly_map": True}
    key = (id(reference), reference.key, json.dumps(settings, sort_keys=True, default=str))

    def prepare() -> tuple[Any, Any]:
        engine = GoldenEngine(**settings)
        return engine, engine.prepare(reference)

    engine, handle = _PREPARED.get_or_make(key, prepare)
    ratio = engine.detect(handle, aligned, valid=valid).anomaly_map
    if ratio is None:  # the engine was asked for it: cannot happen
        raise CalibrationError("the golden engine returned no anomaly map for the report")
    return ratio


def load_defects(folder: str | Path, labels: str | Path | None = None) -> list[Sample]:
    """Known-defect frames: images in ``folder`` + a JSON ``{"file.png": [x1, y1, x2, y2], ...}``
    (default ``folder/labels.json``), boxes in the frame's pixels."""
    import json

    from differad_edge.errors import ImageError
    from differad_edge.images import load_image

    folder = Path(folder)
    path = Path(labels) if labels is not None else folder / "labels.json"
    if not path.is_file():
        raise CalibrationError(f"defect labels {path} not found; write a JSON mapping file name -> [x1, y1, x2, y2]")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e).splitlines()[0][:200]
        raise CalibrationError(f"defect labels {path} are not valid JSON: {why}") from e
    if not isinstance(data, dict) or not data:
        raise CalibrationError(f"defect labels {path} must map file names to [x1, y1, x2, y2] boxes")
    samples = []
    for name, box in sorted(data.items()):
        if Path(name).is_absolute() or ".." in Path(name).parts or Path(name).name != name:
            raise CalibrationError(f"{path}: {name!r} is not a file name inside {folder}; name the frame only")
        try:
            gt = Box.from_seq(box).normalized()
        except (BoxError, TypeError, ValueError, OverflowError) as e:
            shown = repr(box) if len(str(box)) < 80 else str(box)[:77] + "..."
            raise CalibrationError(f"{path}: box of {name!r} is not [x1, y1, x2, y2] finite numbers: {shown}") from e
        if gt.is_degenerate:
            raise CalibrationError(f"{path}: box of {name!r} has no area: {box!r}")
        try:
            image = load_image(folder / name)
        except ImageError as e:
            raise CalibrationError(f"unreadable defect frame {folder / name}: {e}") from e
        h, w = image.shape[:2]
        if gt.x1 < 0 or gt.y1 < 0 or gt.x2 > w or gt.y2 > h:
            raise CalibrationError(
                f"{path}: box of {name!r} {box!r} lies outside the {w}x{h} frame; fix the label (boxes are in frame pixels)"
            )
        samples.append(Sample(name, image, gt, file=str(folder / name), sha256=sha256_file(folder / name)))
    return samples
