"""``differad-export (--int4|--int8|--fp16|--fp32) --model DIR --out BUNDLE [options]`` and
``differad-export --check BUNDLE [--allow-unverified]``.

Exit codes: 0 bundle written / bundle sound and verified; 2 refused (bad input, over budget, failed
verification, bad bundle, or ``--check`` of a bundle whose verification did not pass unless
``--allow-unverified``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from differad_edge.cli.common import OneLineParser, run_command

from .agreement import Thresholds

PROG = "differad-export"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description="Turn a Qwen3-VL checkpoint into a verified edge bundle (ONNX graphs or a bitsandbytes checkpoint).",
    )
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument(
        "--check",
        type=Path,
        metavar="BUNDLE",
        help="only check an existing bundle (manifest, every file's sha256, graph inputs/outputs, passed verification) and print its summary",
    )
    for mode, text in (
        ("int4", "int4 weight-only decoder (MatMulNBits; torch: nf4)"),
        ("int8", "int8 decoder"),
        ("fp16", "fp16 decoder"),
        ("fp32", "fp32 (must reproduce the source tokens exactly)"),
    ):
        q.add_argument(f"--{mode}", dest="quant", action="store_const", const=mode, help=text)
    p.add_argument("--model", type=Path, help="source checkpoint folder (required unless --check)")
    p.add_argument("--out", type=Path, help="bundle folder to create (required unless --check)")
    p.add_argument("--runtime", choices=("onnx", "torch"), default="onnx", help="bundle runtime (default: onnx)")
    p.add_argument(
        "--verify",
        type=Path,
        default=None,
        help="pairs.jsonl to verify on (default: all pairs named by the model's differad_model.json, "
        "as a memorized fixture has; else --verify-count synthetic pairs)",
    )
    p.add_argument("--verify-count", type=int, default=8, help="number of verify pairs (default: 8)")
    p.add_argument("--budget-gb", type=float, default=24.0, help="memory budget in GiB (default: 24)")
    p.add_argument("--block-size", type=int, default=32, help="int4 block size (default: 32)")
    p.add_argument(
        "--no-verify-fail",
        dest="fail_on_verify",
        action="store_false",
        help="write the bundle even when an agreement threshold is missed (recorded in the manifest)",
    )
    d = Thresholds()
    p.add_argument(
        "--min-token-agreement",
        type=float,
        default=d.token_agreement,
        help="also gate on token agreement (default: reported only)",
    )
    p.add_argument(
        "--min-box-iou",
        type=float,
        default=d.box_iou,
        help=f"mean IoU of source and bundle boxes (default: {d.box_iou})",
    )
    p.add_argument(
        "--min-decision-agreement",
        type=float,
        default=d.decision_agreement,
        help=f"share of identical anomaly/OK decisions (default: {d.decision_agreement})",
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="answer length cap (default: the vlm engine's, 64 no-think / 512 think)",
    )
    p.add_argument("--max-pixels", type=int, default=800 * 800, help="size policy max pixels (default: 800*800)")
    p.add_argument("--vision-fp16", action="store_true", help="fp16 vision graph (for GPU bundles)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="with --check: exit 0 for a sound bundle whose export verification did not pass",
    )
    p.add_argument(
        "--no-grammar",
        dest="grammar",
        action="store_false",
        help="no answer grammar in the manifest; verify with unconstrained greedy decoding",
    )
    return p


def check(path: Path, allow_unverified: bool = False) -> int:
    """Print a bundle's summary after checking every checksum; a bundle whose verification did not pass
    is refused (exit 2) unless ``allow_unverified``."""
    from differad_edge.errors import BundleError
    from differad_edge.onnxrt.bundle import bundle_bytes, load_bundle
    from differad_edge.onnxrt.runtime import check_graphs

    b = load_bundle(path)
    check_graphs(b)  # swapped or foreign graph files: refused here, not when the engine loads them
    m = b.manifest
    ver = m.get("verification") or {}
    passed = ver.get("passed") is True
    state = "OK" if passed else "UNVERIFIED"
    print(
        f"{b.root}: {state} ({len(m['files'])} files, {bundle_bytes(m) / 1e6:.1f} MB) runtime={b.runtime} "
        f"quantization={b.quantization} template={m['prompt']['template_id']} "
        f"grammar={'yes' if m.get('grammar') else 'no'} "
        f"verification={'passed' if passed else 'NOT passed'} {ver.get('agreement', {})}"
    )
    if not passed:
        why = "; ".join(ver.get("failures") or []) or "no passed verification recorded"
        if not allow_unverified:
            raise BundleError(
                f"bundle {b.root} did not pass export verification ({why}); re-export it, or pass "
                "--allow-unverified to accept it"
            )
        print(f"{PROG}: warning: accepting an unverified bundle ({why})", file=sys.stderr)
    return 0


def export(args: argparse.Namespace) -> int:
    from .exporter import make_config, run_export

    cfg = make_config(
        model=args.model,
        out=args.out,
        quant=args.quant,
        runtime=args.runtime,
        verify=args.verify,
        verify_count=args.verify_count,
        budget_gb=args.budget_gb,
        block_size=args.block_size,
        fail_on_verify=args.fail_on_verify,
        max_new_tokens=args.max_new_tokens,
        max_pixels=args.max_pixels,
        vision_fp16=args.vision_fp16,
        overwrite=args.overwrite,
        grammar=args.grammar,
        thresholds={
            "token_agreement": args.min_token_agreement,
            "box_iou": args.min_box_iou,
            "decision_agreement": args.min_decision_agreement,
        },
    )
    result = run_export(cfg, log=lambda m: print(m, file=sys.stderr))
    print(result.bundle)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``differad-export``; 0 bundle written or checked, 2 refused, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.check is not None:
        return run_command(PROG, lambda a: check(a.check, a.allow_unverified), args)
    if args.model is None or args.out is None:
        parser.error("--model and --out are required to export")
    return run_command(PROG, export, args)


if __name__ == "__main__":
    sys.exit(main())
