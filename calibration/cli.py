"""``differad-calibrate``: capture -> build -> validate -> promote (and rollback, list, show).

Every expected failure (unknown product, empty source, unreadable frame, bad config) prints one
line on stderr and exits 2; ``DIFFERAD_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from differad_edge.cli.common import OneLineParser, run_command

from differad_edge.alignment import MOTIONS
from differad_edge.variation import VARIATION_METHODS

PROG = "differad-calibrate"
STORE_ENV = "DIFFERAD_STORE"


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default=os.environ.get(STORE_ENV, "references"),
        metavar="DIR",
        help=f"reference store folder (default: ${STORE_ENV} or ./references)",
    )


def _operator_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--operator", metavar="NAME", help="who does this (default: $DIFFERAD_OPERATOR); kept in the history"
    )


def _pointer_args(p: argparse.ArgumentParser, force: str, reason: str) -> None:
    """What a command that moves a product's active pointer takes: store, product, --force with its
    --reason (both written to the history) and the operator."""
    _store_arg(p)
    p.add_argument("--product", required=True, metavar="ID")
    p.add_argument("--force", action="store_true", help=force)
    p.add_argument("--reason", help=reason)
    _operator_arg(p)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Field calibration of DifferAD Edge reference images.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True

    p = sub.add_parser("capture", help="collect candidate frames and judge them with the quality gates")
    p.add_argument("--product", required=True, metavar="ID")
    p.add_argument("--source", required=True, help="folder of images, video file, ROS 2 bag, or ros:TOPIC")
    p.add_argument("--frames", type=int, metavar="N", help="number of frames to collect (default: all the source has)")
    p.add_argument("--out", required=True, metavar="SESSION_DIR", help="session folder to write")
    p.add_argument("--stride", type=int, default=1, help="keep every K-th frame of the source (default 1)")
    p.add_argument("--topic", help="image topic inside a bag with several")
    p.add_argument("--timeout", type=float, default=30.0, help="ros: seconds without a frame before giving up")
    p.add_argument("--holdout", type=float, default=0.25, help="share of frames kept for validation (default 0.25)")
    p.add_argument("--config", help="calibration YAML (sections gates/build/validate)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing session in --out")
    p.set_defaults(func=_capture)

    p = sub.add_parser("build", help="build a candidate reference from a session's accepted frames")
    _store_arg(p)
    _operator_arg(p)
    p.add_argument("--session", required=True, metavar="SESSION_DIR")
    p.add_argument("--care-mask", metavar="PNG|YAML", help="inspected area: PNG (white = inspect) or YAML polygons")
    p.add_argument("--auto-mask", action="store_true", help="also ignore pixels that vary between good parts")
    p.add_argument("--max-spread", type=float, help="auto-mask: spread (gray levels) above which a pixel is ignored")
    p.add_argument("--method", choices=[str(m) for m in VARIATION_METHODS], help="reference = median (default) or mean")
    p.add_argument(
        "--motion",
        choices=["auto", *(str(m) for m in MOTIONS)],  # plain names: argparse's error shows their repr
        help="alignment motion model (default auto: chosen on the frames by residual, stored with the reference)",
    )
    p.add_argument("--config", help="calibration YAML; with it the gates are re-run with its thresholds")
    p.set_defaults(func=_build)

    p = sub.add_parser("validate", help="measure false alarms / detections on held-out frames, tune thresholds")
    _store_arg(p)
    p.add_argument("--product", required=True, metavar="ID")
    p.add_argument("--version", help="version to validate (default: the newest candidate)")
    p.add_argument("--session", metavar="SESSION_DIR", help="use this session's held-out good frames")
    p.add_argument("--good", action="append", default=[], metavar="DIR", help="folder of more good frames (repeatable)")
    p.add_argument("--defects", metavar="DIR", help="folder of known-defect frames with labels.json")
    p.add_argument("--labels", metavar="JSON", help="defect boxes {file: [x1,y1,x2,y2]} (default DIR/labels.json)")
    p.add_argument("--target-far", type=float, help="largest false-alarm rate allowed (default 0)")
    p.add_argument("--min-detection", type=float, help="smallest detection rate required (default 0.8)")
    p.add_argument(
        "--report",
        metavar="DIR",
        help="new HTML report folder (default: a timestamped "
        "SESSION_DIR/reports/report-PRODUCT-VERSION-TIME or ./reports/...; never overwritten)",
    )
    _operator_arg(p)
    p.add_argument("--config", help="calibration YAML (section validate)")
    p.set_defaults(func=_validate)

    p = sub.add_parser("promote", help="make a validated version active (or --force with --reason)")
    _pointer_args(
        p, "promote a version that did not pass validation", "why (required with --force; written to the history)"
    )
    p.add_argument("--version", required=True)
    p.set_defaults(func=_promote)

    p = sub.add_parser("rollback", help="re-activate the previously active version")
    _pointer_args(
        p,
        "roll back onto a version that is not validated",
        "why (required with --force onto a version that is not validated)",
    )
    p.set_defaults(func=_rollback)

    p = sub.add_parser("list", help="versions of one or all products")
    _store_arg(p)
    p.add_argument("--product", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)

    p = sub.add_parser("upgrade", help="seal a product's manifests of an earlier release (checksummed format 2)")
    _store_arg(p)
    p.add_argument("--product", metavar="ID", help="one product (default: every product)")
    p.set_defaults(func=_upgrade)

    p = sub.add_parser("show", help="details of a version (default: the active one)")
    _store_arg(p)
    p.add_argument("--product", required=True, metavar="ID")
    p.add_argument("--version")
    p.add_argument("--json", action="store_true", help="everything, as JSON")
    p.set_defaults(func=_show)
    return parser


def _config(args: argparse.Namespace) -> Any:
    from .config import load_config

    return load_config(getattr(args, "config", None))


def _operator(args: argparse.Namespace, required: bool = True) -> str | None:
    from .commands import resolve_operator

    return resolve_operator(args.operator, required)


def _store(args: argparse.Namespace) -> Any:
    from differad_edge.store import ReferenceStore

    return ReferenceStore(args.store)


def _capture(args: argparse.Namespace) -> int:
    from .session import capture

    cfg = _config(args)
    tty = sys.stderr.isatty()

    def report_progress(p: Any) -> None:  # live: "7/15 captured, last rejected: blurred"
        if tty:
            print(f"\r{p.line()}\033[K", end="", file=sys.stderr, flush=True)
        elif p.count % 10 == 0 or p.last_rejected_now:
            print(p.line(), file=sys.stderr, flush=True)

    try:
        session = capture(
            args.product,
            args.source,
            args.frames,
            args.out,
            holdout=args.holdout,
            gates=cfg.gates,
            overwrite=args.overwrite,
            on_frame=report_progress,
            stride=args.stride,
            topic=args.topic,
            timeout_s=args.timeout,
        )
    finally:
        if tty:
            print(file=sys.stderr)
    build_ok = len(session.select("build"))
    held = len(session.select("holdout"))
    print(
        f"captured {len(session.frames)} frames of {args.product} into {session.root}: "
        f"{build_ok} accepted for the build, {held} accepted held out for validation"
    )
    for f in session.frames:
        for gate, why in f.verdict.get("reasons", {}).items():
            print(f"  rejected {f.name} [{gate}]: {why}")
        for gate, why in f.verdict.get("warnings", {}).items():
            print(f"  warning {f.name} [{gate}]: {why}")
    if build_ok < cfg.gates.min_accepted:
        print(
            f"warning: fewer than {cfg.gates.min_accepted} accepted frames; 'build' will refuse this session",
            file=sys.stderr,
        )
    return 0


def _build(args: argparse.Namespace) -> int:
    from .build import build_candidate
    from .config import BuildConfig, make_config
    from .session import load_session

    cfg = _config(args)
    data = cfg.build.model_dump()
    data.update({k: v for k, v in (("method", args.method), ("motion", args.motion)) if v is not None})
    if args.auto_mask or args.max_spread is not None:
        data["auto_mask"]["enabled"] = True
    if args.max_spread is not None:
        data["auto_mask"]["max_spread"] = args.max_spread
    build = make_config(BuildConfig, data, "build options")
    session = load_session(args.session)
    version = build_candidate(
        _store(args),
        session,
        config=build,
        gates=cfg.gates if args.config else None,
        care_mask=args.care_mask,
        progress=sys.stderr.isatty(),
        operator=_operator(args, required=False),
    )
    print(
        f"built candidate {session.product_id}/{version}; next: differad-calibrate validate "
        f"--product {session.product_id} --version {version} --session {session.root}"
    )
    print(version)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .commands import latest_candidate, new_report_dir, run_validation
    from .config import ValidateConfig, make_config
    from .session import load_session

    cfg = _config(args).validate_
    updates = {
        k: v
        for k, v in (("target_false_alarm_rate", args.target_far), ("min_detection_rate", args.min_detection))
        if v is not None
    }
    if updates:
        cfg = make_config(ValidateConfig, {**cfg.model_dump(), **updates}, "validate options")
    operator = _operator(args)
    store = _store(args)
    version = args.version or latest_candidate(store, args.product)
    session = load_session(args.session) if args.session else None
    # beside the session it judged, else beside the store (never the working directory)
    report_root = session.root if session else Path(args.store)
    report_dir = args.report or new_report_dir(report_root / "reports", args.product, version)
    result = run_validation(
        store,
        args.product,
        version,
        session=session,
        good_dirs=args.good,
        defects_dir=args.defects,
        labels=args.labels,
        config=cfg,
        report_dir=report_dir,
        progress=sys.stderr.isatty(),
        operator=operator,
    )
    s = result.to_json()
    verdict = "PASSED" if result.passed else "FAILED"
    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    thresholds = ", ".join(f"{k}={v}" for k, v in result.golden.items()) or "none"
    print(
        f"{args.product}/{version} {verdict}: false alarms {pct(s['false_alarm_rate'])} on {s['n_good']} good frames, "
        f"detection {pct(s['detection_rate'])} on {s['n_defect']} defects; thresholds {thresholds}"
    )
    for r in result.reasons:
        print(f"  {r}")
    failing = result.failing_frames()
    for key, label in (
        ("false_alarms", "false alarm"),
        ("missed", "missed defect"),
        ("alignment_failures", "not aligned"),
    ):
        for name in failing[key]:
            print(f"  {label}: {name}")
    if result.golden and result.passed:
        print("the golden engine applies these thresholds automatically once this version is active")
    print(f"report: {result.report_path}")
    return 0 if result.passed else 1


def _promote(args: argparse.Namespace) -> int:
    from .commands import promote

    promote(_store(args), args.product, args.version, force=args.force, reason=args.reason, operator=_operator(args))
    print(f"{args.product}: active version is now {args.version}{' (forced)' if args.force else ''}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from .commands import rollback, rollback_target

    store = _store(args)
    operator = _operator(args)
    target = rollback_target(store, args.product)
    version = rollback(store, args.product, force=args.force, reason=args.reason, operator=operator)
    if target is not None and target.status != "validated":  # only reached with --force (the store refuses otherwise)
        print(
            f"warning: {args.product}/{version} is {target.status}: it never passed validation (forced rollback, "
            "logged with your reason)",
            file=sys.stderr,
        )
    print(f"{args.product}: rolled back, active version is now {version}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from .commands import list_products

    rows = list_products(_store(args), args.product)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'product':<20} {'version':<10} {'status':<10} {'active':<6} {'FA rate':>8} {'det. rate':>9}  created")
    for r in rows:
        fa = "-" if r["false_alarm_rate"] is None else f"{r['false_alarm_rate']:.1%}"
        dr = "-" if r["detection_rate"] is None else f"{r['detection_rate']:.1%}"
        print(
            f"{r['product']:<20} {r['version']:<10} {r['status']:<10} {'*' if r['active'] else '':<6} "
            f"{fa:>8} {dr:>9}  {r['created']}"
        )
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    store = _store(args)
    products = [args.product] if args.product else store.products()
    for pid in products:
        store.upgrade(pid)
        print(f"{pid}: manifests sealed (format 2)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from .commands import show, summary_lines

    details = show(_store(args), args.product, args.version)
    print(json.dumps(details, indent=2, sort_keys=True) if args.json else "\n".join(summary_lines(details)))
    return 0


def _add_view_options(parser: argparse.ArgumentParser) -> None:
    """``--view NAME`` on every command that takes ``--product``: the view (robot pose) is its own
    reference, stored as ``views.reference_id(product, view)`` (``product.view``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if "--product" in sub._option_string_actions and "--view" not in sub._option_string_actions:
                    sub.add_argument(
                        "--view", metavar="ID", help="view (robot pose) of the product: its reference is PRODUCT.VIEW"
                    )


def _with_view(func):
    def run(args: argparse.Namespace) -> int | None:
        if getattr(args, "view", None):
            from differad_edge.views import reference_id

            args.product = reference_id(args.product, args.view)  # ConfigError: one line, exit 2
        return func(args)

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``differad-calibrate``; 0 ok, 1 validation failed, 2 bad input, 130 interrupted."""
    parser = build_parser()
    _add_view_options(parser)
    args = parser.parse_args(argv)
    return run_command(PROG, _with_view(args.func), args)


if __name__ == "__main__":
    sys.exit(main())
