"""``differad inspect``: targets against a reference image or a registered reference, one verdict each.

Exit status (for scripts): 0 every target inspected (OK or NG), 3 at least one target
NOT_INSPECTED (and none unreadable), 2 bad input (an unreadable target, a wrong option).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ImageError
from ..fileio import atomic_write_text, refuse_overwrite
from ..images import load_image, save_image
from ..inspector import Inspection, Inspector
from ..outcome import Verdict
from ..store import ReferenceStore
from .common import DIFFERAD, EXIT_ERROR, EXIT_NOT_INSPECTED, error_message, fail, require_out_dir
from .engine_args import (
    add_engine_arguments,
    add_store_arguments,
    build_engine,
    build_inspector,
    config_options,
    load_reference,
    store_reference,
)
from .render import annotated_inspection, unique_name

#: ANSI colours of the verdicts on a terminal (OK green, NG red, NOT INSPECTED amber).
_ANSI = {Verdict.OK: "\033[32m", Verdict.NG: "\033[31m", Verdict.NOT_INSPECTED: "\033[33m"}
_RESET = "\033[0m"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="judge target images against a reference: OK, NG (with every defect) or NOT INSPECTED",
        description="Check, align and inspect each target against a reference image (-r) or a registered "
        "reference (--store/--product, exactly as the ROS node does). Exit 0: all inspected; "
        f"{EXIT_NOT_INSPECTED}: some target NOT INSPECTED; 2: bad input.",
    )
    p.add_argument("--reference", "-r", type=Path, metavar="R", help="defect-free reference image")
    p.add_argument("--target", "-t", type=Path, required=True, nargs="+", metavar="T", help="target image(s)")
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="write annotated images (boxes, heat map) and detections.jsonl"
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object per target (JSON Lines; eval --predictions reads it)"
    )
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the verdicts (auto: on a terminal, unless NO_COLOR is set)",
    )
    add_store_arguments(p)
    add_engine_arguments(p)
    p.set_defaults(func=run)


def _use_color(mode: str) -> bool:
    if mode != "auto":
        return mode == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _human_line(target: Path, inspection: Inspection, color: bool) -> str:
    det = inspection.detection
    verdict = det.verdict
    if verdict is Verdict.NOT_INSPECTED:
        text = f"NOT INSPECTED ({det.not_inspected}): {det.message}"
    elif verdict is Verdict.NG:
        boxes = " ".join(str(d.box.as_int_list()) for d in det.defects)
        text = f"NG {len(det.defects)} defect{'s' if len(det.defects) > 1 else ''} {boxes}"
    else:
        text = "OK"
    if color:
        text = f"{_ANSI[verdict]}{text}{_RESET}"
    total = inspection.timings_ms.get("total", 0.0)
    notes = f" ({'; '.join(det.notes)})" if det.notes and verdict is not Verdict.NOT_INSPECTED else ""
    return f"{target}: {text} score={det.score:.3f} [{det.engine}, {total:.1f} ms]{notes}"


def _outputs(args: argparse.Namespace) -> dict[Path, str]:
    """target -> annotated file name; refused before any work when one would land on an input."""
    used: set[str] = set()
    names = {t: unique_name(t.stem, used) for t in args.target}
    if args.out is not None:
        inputs = [*args.target, *([args.reference] if args.reference else [])]
        outs = [args.out / n for n in names.values()] + [args.out / "detections.jsonl"]
        refuse_overwrite(outs, inputs)
    return names


def run(args: argparse.Namespace) -> int:
    """Inspect every target; a target that cannot be read is reported and skipped, so one bad file
    does not lose the results of the others (exit 2 at the end when any failed)."""
    require_out_dir(args.out)
    in_store = store_reference(args)
    if (in_store is None) == (args.reference is None):
        raise ConfigError("give the reference either as an image (-r R) or from a store (--store DIR --product ID)")
    names = _outputs(args)
    if args.out is not None and (args.engine or "golden") == "golden" and "anomaly_map" not in config_options(args):
        args.engine_option = [*args.engine_option, "anomaly_map=true"]  # the heat map written beside the boxes
    engine = build_engine(args)
    color = _use_color(args.color)
    failed = not_inspected = 0
    try:
        inspector = build_inspector(engine, args, in_store[0] if in_store else None)
        reference = load_reference(args.reference) if args.reference is not None else None
        ref_image = None
        if args.out is not None:
            ref_image = reference.image if reference is not None else _store_image(in_store)
        lines: list[str] = []
        for target_path in args.target:
            try:
                frame = load_image(target_path)
                inspection = _inspect(inspector, reference, in_store, frame)
            except (ImageError, OSError) as e:
                failed += 1
                message = error_message(e)
                message = message if str(target_path) in message else f"{target_path}: {message}"
                lines.append(json.dumps({"id": str(target_path), "target": str(target_path), "error": message}))
                if args.json:
                    print(lines[-1], flush=True)
                fail(DIFFERAD, message)
                continue
            not_inspected += inspection.verdict is Verdict.NOT_INSPECTED
            result: dict[str, Any] = {"id": str(target_path), "target": str(target_path), **inspection.to_json()}
            lines.append(json.dumps(result, ensure_ascii=True))
            print(lines[-1] if args.json else _human_line(target_path, inspection, color), flush=True)
            if ref_image is not None:
                save_image(args.out / names[target_path], annotated_inspection(ref_image, frame, inspection.detection))
        if args.out is not None:
            atomic_write_text(args.out / "detections.jsonl", "\n".join(lines) + "\n")
            if not args.json and failed < len(args.target):
                print(f"annotated images and detections.jsonl written to {args.out}", file=sys.stderr)
    finally:
        engine.close()
    if failed and len(args.target) > 1:
        return fail(DIFFERAD, f"{failed} of {len(args.target)} targets could not be inspected (see above)")
    if failed:
        return EXIT_ERROR
    if not_inspected:
        print(
            f"{DIFFERAD}: {not_inspected} of {len(args.target)} targets NOT INSPECTED (exit {EXIT_NOT_INSPECTED})",
            file=sys.stderr,
        )
        return EXIT_NOT_INSPECTED
    return 0


def _store_image(in_store: tuple[ReferenceStore, str, str | None] | None) -> np.ndarray:
    if in_store is None:
        raise ConfigError("no reference given")  # unreachable: run() checked that one is
    store, product, version = in_store
    return store.load(product, version).image


def _inspect(inspector: Inspector, reference: Any, in_store: Any, frame: np.ndarray) -> Inspection:
    if reference is not None:
        return inspector.inspect_pair(reference, frame)
    _, product, version = in_store
    return inspector.inspect(frame, product, version)
