"""``differad eval``: score an engine (or a file of predictions) on a pairs file with the paper's metrics.

A long run never stops for one bad sample: malformed lines and unreadable samples are skipped,
counted and listed in ``report.json``; only a run with nothing left to score fails.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

from ..boxes import Box
from ..dataset import Pair, read_pairs, read_predictions
from ..engines import Reference
from ..errors import ConfigError, DatasetError, DifferadError
from ..fileio import atomic_write_json, atomic_write_text, refuse_overwrite
from ..images import load_image, save_image
from ..lru import LRU
from ..metrics import Record, Report, evaluate, render_beyond, render_table, report_to_json, sample_iou
from ..viz import plot_report
from .common import require_out_dir
from .engine_args import (
    add_engine_arguments,
    add_store_arguments,
    build_engine,
    build_inspector,
    engine_flags_given,
    load_reference,
    store_reference,
)
from .render import annotated_pair, median_timings, unique_name

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
#: How many skipped samples are echoed on stderr while the run goes on (all go to report.json).
ECHO_ERRORS = 5


@dataclass
class Outcome:
    """One scored sample: the prediction in target pixels next to its pair."""

    pair: Pair
    pred: Box | None
    valid: bool
    score: float | None = None
    text: str | None = None
    reason: str | None = None
    iou: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    verdict: str | None = None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score an engine or a predictions file on a pairs.jsonl dataset",
        description="Per-category Acc@0.3, F1@0.3, mIoU, mIoU_ano, mIoU_nor (the paper's protocol).",
    )
    p.add_argument("--data", type=Path, required=True, metavar="PAIRS", help="pairs.jsonl (dataset format)")
    p.add_argument(
        "--predictions",
        type=Path,
        metavar="PREDS",
        help="score this predictions.jsonl (id + raw 'text' or pixel 'box') instead of running an engine",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="write report.json, predictions.jsonl and worst cases")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="score only the first N pairs")
    p.add_argument(
        "--worst", type=_non_negative_int, default=12, metavar="K", help="annotated images of the K worst samples"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_store_arguments(p)
    add_engine_arguments(p)
    p.set_defaults(func=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text}")
    return value


class _ReferenceCache:
    """Datasets reuse a few references for many targets: decode each once (bounded memory)."""

    def __init__(self, capacity: int = 32) -> None:
        self._refs: LRU[Path, Reference] = LRU(capacity)

    def get(self, path: Path) -> Reference:
        return self._refs.get_or_make(path, lambda: load_reference(path))


@dataclass
class Predictor:
    """Where predictions come from: an engine run, or a file of another model's answers."""

    predict: Callable[[Pair], Outcome]
    describe: dict[str, Any]
    close: Callable[[], None] = lambda: None
    errors: list[str] = field(default_factory=list)  # malformed lines of a predictions file
    missing: list[str] = field(default_factory=list)  # pair ids without a prediction


def engine_predictor(args: argparse.Namespace) -> Predictor:
    """Run the engine on every pair: against the pair's own reference image, or with ``--store`` /
    ``--product`` against the registered reference (what the node would decide on these targets)."""
    in_store = store_reference(args)
    engine = build_engine(args)
    inspector = build_inspector(engine, args, in_store[0] if in_store else None)
    refs = _ReferenceCache()

    def predict(pair: Pair) -> Outcome:
        frame = load_image(pair.target)
        if in_store is not None:
            inspection = inspector.inspect(frame, in_store[1], in_store[2])
        else:
            inspection = inspector.inspect_pair(refs.get(pair.reference), frame)
        det = inspection.detection
        box = det.box if det.valid else None
        return Outcome(
            pair,
            box,
            det.valid,
            det.score,
            det.text,
            det.message,
            timings_ms=inspection.timings_ms,
            verdict=det.verdict.value,
        )

    def close() -> None:
        inspector.close()
        engine.close()

    return Predictor(predict, engine.describe(), close)


def _resolved(path: str | Path) -> str:
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError, ValueError):
        return str(path)


def file_predictor(path: Path) -> Predictor:
    """Predictions matched to pairs by id, else by target image (``differad inspect --json`` lines
    carry the target path as their id and in ``target``; relative paths are read from the current
    folder, as inspect wrote them)."""
    preds = read_predictions(path)
    by_target = {_resolved(p.target or pid): p for pid, p in preds.items()}
    missing: list[str] = []

    def predict(pair: Pair) -> Outcome:
        p = preds.get(pair.id) or by_target.get(_resolved(pair.target))
        if p is None:  # protocol: a sample without an answer scores as an invalid answer
            missing.append(pair.id)
            return Outcome(pair, None, False, reason="no prediction for this id")
        return Outcome(
            pair,
            p.box_on(pair.target),
            p.valid,
            p.score,
            p.text,
            p.reason,  # raw answers: 0-1000 scale
            verdict=p.verdict,
        )

    described = {"engine": "predictions", "predictions": str(path)}
    return Predictor(predict, described, errors=[f"predictions {e}" for e in preds.errors], missing=missing)


def _score(outcomes: list[Outcome]) -> Report:
    for o in outcomes:
        o.iou = sample_iou(o.pred, o.pair.box, valid=o.valid)
    return evaluate(
        Record(o.pred, o.pair.box, o.valid, o.pair.category, o.pair.subset, o.pair.id, o.score, o.verdict)
        for o in outcomes
    )


def run(args: argparse.Namespace) -> int:
    require_out_dir(args.out)
    if args.out is not None:
        outputs = [args.out / n for n in ("report.json", "predictions.jsonl", "metrics.png")]
        refuse_overwrite(outputs, [args.data, *([args.predictions] if args.predictions else [])])
    pairs_file = read_pairs(args.data)
    pairs = pairs_file.pairs[: args.limit] if args.limit else pairs_file.pairs
    bad_lines = [f"pairs {e}" for e in pairs_file.errors]
    if not pairs:
        _nothing_to_score(args.data, bad_lines, [])
    if args.predictions is not None:
        if engine_flags_given(args):
            raise ConfigError(
                f"--predictions scores a file, no engine runs; drop {', '.join(engine_flags_given(args))}"
            )
        if args.store is not None or args.product is not None:
            raise ConfigError("--predictions scores a file, no reference is used; drop --store / --product")
        predictor = file_predictor(args.predictions)
        bad_lines += predictor.errors
    else:
        predictor = engine_predictor(args)
    missing = predictor.missing

    outcomes: list[Outcome] = []
    bad_samples: list[str] = []
    first_unexpected: Exception | None = None
    try:
        bar = tqdm(pairs, desc="eval", unit="pair", file=sys.stderr, disable=args.no_progress, mininterval=0.5)
        for pair in bar:
            try:
                outcomes.append(predictor.predict(pair))
            except Exception as e:  # one bad sample must not end a long run
                why = str(e)
                if not isinstance(e, DifferadError):
                    first_unexpected = first_unexpected or e
                    why = f"{type(e).__name__}: {e}"
                bad_samples.append(f"{pair.id}: {why}")
                if len(bad_samples) <= ECHO_ERRORS:
                    tqdm.write(f"differad: skipped sample {pair.id}: {why}", file=sys.stderr)
    finally:
        predictor.close()
    if not outcomes:
        if first_unexpected is not None:  # every sample failed the same unexpected way: a bug, show it
            raise first_unexpected
        _nothing_to_score(args.data, bad_lines, bad_samples)

    for line in bad_lines[:ECHO_ERRORS]:  # what was skipped, and why (a box outside its image, ...)
        print(f"differad: skipped {line}", file=sys.stderr)
    if len(bad_lines) > ECHO_ERRORS:
        print(
            f"differad: ... and {len(bad_lines) - ECHO_ERRORS} more skipped lines (all listed in report.json with --out)",
            file=sys.stderr,
        )
    report = _score(outcomes)
    print(render_table(report))
    print(render_beyond(report))
    summary = (
        f"scored {len(outcomes)} samples; skipped {len(bad_lines)} malformed lines and {len(bad_samples)} bad samples"
    )
    if missing:
        summary += f"; {len(missing)} pairs had no prediction (scored as invalid)"
    medians = median_timings(outcomes)
    if "total" in medians:
        summary += f"; median {medians['total']:.1f} ms per pair"
    print(summary)
    if args.out is not None:
        _write_outputs(args, report, outcomes, bad_lines, bad_samples, missing, predictor.describe)
        print(f"report written to {args.out / 'report.json'}")
    if missing and len(missing) == len(outcomes):
        raise DatasetError(
            f"no prediction in {args.predictions} matches a pair of {args.data} (by id or target image); "
            "check that both name the same samples (the table above scores every pair as invalid)"
        )
    return 0


def _nothing_to_score(data: Path, bad_lines: list[str], bad_samples: list[str]) -> NoReturn:
    problems = bad_lines + bad_samples
    raise DatasetError(
        f"no sample of {data} could be scored ({len(bad_lines)} malformed lines, {len(bad_samples)} bad samples); "
        f"first problem: {problems[0] if problems else 'the file holds no pairs'}"
    )


def _write_outputs(
    args: argparse.Namespace,
    metrics_report: Report,
    outcomes: list[Outcome],
    bad_lines: list[str],
    bad_samples: list[str],
    missing: list[str],
    described: dict,
) -> None:
    out: Path = args.out
    worst = sorted(outcomes, key=lambda o: o.iou)[: args.worst]
    worst_files = _write_worst(out / "worst", worst)
    report = {
        "data": str(args.data),
        "engine": described,
        "metrics": report_to_json(metrics_report),
        "median_timings_ms": median_timings(outcomes),
        "counts": {
            "scored": len(outcomes),
            "malformed_lines": len(bad_lines),
            "bad_samples": len(bad_samples),
            "missing_predictions": len(missing),
        },
        "malformed_lines": bad_lines,
        "bad_samples": bad_samples,
        "missing_predictions": missing,
        "worst": [
            {"id": o.pair.id, "iou": round(o.iou, 4), "image": f} for o, f in zip(worst, worst_files, strict=True)
        ],
    }
    atomic_write_json(out / "report.json", report)
    plot_report(metrics_report, out / "metrics.png", title=f"differad eval: {args.data.name}")
    atomic_write_text(out / "predictions.jsonl", "".join(json.dumps(_prediction_row(o)) + "\n" for o in outcomes))


def _prediction_row(o: Outcome) -> dict[str, Any]:
    """Predictions in the dataset's predictions format (pixel boxes), so a run can be re-scored."""
    row: dict[str, Any] = {"id": o.pair.id, "box": o.pred.as_int_list() if o.pred is not None else None}
    row.update(valid=o.valid, iou=round(o.iou, 4))
    if o.score is not None:
        row["score"] = round(float(o.score), 6)
    if o.verdict is not None:
        row["verdict"] = o.verdict
    if o.reason is not None:
        row["reason"] = o.reason
    if o.text is not None:  # the raw answer, for reading; "box" wins when the file is scored again
        row["text"] = o.text
    return row


def _write_worst(folder: Path, worst: list[Outcome]) -> list[str]:
    used: set[str] = set()
    names: list[str] = []
    for rank, o in enumerate(worst, 1):
        name = unique_name(f"{rank:03d}_{_SAFE.sub('_', str(o.pair.id))}", used)
        try:
            pair = load_image(o.pair.reference), load_image(o.pair.target)
            save_image(folder / name, annotated_pair(*pair, o.pred, o.pair.box, label=f"IoU {o.iou:.2f}"))
        except DifferadError:  # an image that vanished since scoring must not lose the report
            name = ""
        names.append(f"worst/{name}" if name else "")
    return names
