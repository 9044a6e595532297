"""``differad inspect``: one reference, one or more targets, one answer per target."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import AlignmentError, ImageError
from ..fileio import atomic_write_text
from ..images import load_image
from .common import DIFFERAD, EXIT_ERROR, error_message, fail, require_out_dir
from .engine_args import add_engine_arguments, build_engine, build_inspector, load_reference
from .render import detection_label, save_annotated, unique_name


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="find the anomaly in target images by comparing them with a reference",
        description="Align each target onto the reference, run the engine, report the box in target pixels.",
    )
    p.add_argument("--reference", "-r", type=Path, required=True, metavar="R", help="defect-free reference image")
    p.add_argument("--target", "-t", type=Path, required=True, nargs="+", metavar="T", help="target image(s)")
    p.add_argument("--out", type=Path, metavar="DIR", help="write annotated images and detections.jsonl here")
    p.add_argument("--json", action="store_true", help="print one JSON object per target (JSON Lines)")
    add_engine_arguments(p)
    p.set_defaults(func=run)


def _human_line(target: Path, result: dict) -> str:
    if not result["valid"]:
        verdict = f"INVALID ({result.get('reason') or 'unparsable answer'})"
    elif result["anomaly"]:
        verdict = f"ANOMALY box={result['box']}"
    else:
        verdict = "ok"
    timings = result["timings_ms"]
    total = timings.get("total", sum(timings.values()))
    return f"{target}: {verdict} score={result['score']:.3f} [{result['engine']}, {total:.1f} ms]"


def run(args: argparse.Namespace) -> int:
    """Inspect every target; a target that cannot be read or matched is reported and skipped, so one
    bad file does not lose the results of the others (exit 2 at the end when any failed)."""
    require_out_dir(args.out)
    reference = load_reference(args.reference)
    engine = build_engine(args)
    failed = 0
    try:
        inspector = build_inspector(engine, args)
        used: set[str] = set()
        lines: list[str] = []
        for target_path in args.target:
            try:
                frame = load_image(target_path)
                inspection = inspector.inspect_pair(reference, frame)
            except (ImageError, AlignmentError, OSError) as e:
                failed += 1
                message = error_message(e)
                message = message if str(target_path) in message else f"{target_path}: {message}"
                lines.append(json.dumps({"target": str(target_path), "error": message}))
                if args.json:
                    print(lines[-1], flush=True)
                fail(DIFFERAD, message)
                continue
            det = inspection.detection
            result = {"target": str(target_path), **inspection.to_json()}
            lines.append(json.dumps(result))
            print(lines[-1] if args.json else _human_line(target_path, result), flush=True)
            if args.out is not None:
                name = unique_name(target_path.stem, used)
                box = det.box if det.anomaly else None
                save_annotated(args.out / name, reference.image, frame, box, label=detection_label(det), score=det.score)
        if args.out is not None:
            atomic_write_text(args.out / "detections.jsonl", "\n".join(lines) + "\n")
            if not args.json and failed < len(args.target):
                print(f"annotated images and detections.jsonl written to {args.out}", file=sys.stderr)
    finally:
        engine.close()
    if failed and len(args.target) > 1:
        return fail(DIFFERAD, f"{failed} of {len(args.target)} targets could not be inspected (see above)")
    return EXIT_ERROR if failed else 0
