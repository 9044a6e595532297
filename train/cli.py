"""``differad-train``: make synthetic pairs, cold-start SFT, GRPO with DCLR; merge LoRA adapters.

Bad configs and inputs print one line and exit 2 (``DIFFERAD_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from differad_edge.cli.common import OneLineParser, run_command
from differad_edge.errors import ConfigError

PROG = "differad-train"


def cmd_synth(args: argparse.Namespace) -> int:
    from differad_edge.synth import generate_dataset

    if args.count < 1:
        raise ConfigError(f"--count {args.count} must be >= 1")
    path = generate_dataset(args.out, args.count, args.seed, normals=args.normals, textures=args.textures,
                            size=args.size)
    print(path)
    return 0


def _job(kind: str, args: argparse.Namespace) -> object:
    from .config import load_config

    overrides = list(args.overrides)
    if args.merge_lora:
        overrides.append("merge_lora=true")
    return load_config(kind, args.config, overrides)


def cmd_grpo(args: argparse.Namespace) -> int:
    from .jobs import run_grpo

    print(run_grpo(_job("grpo", args)))
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    from .jobs import run_sft

    print(run_sft(_job("sft", args)))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from differad_edge.prompts import get_template
    from differad_edge.vlm.loader import load_processor

    from .config import ModelSection
    from .modeling import merge_lora, save_inference_files

    template, processor = get_template(args.template), load_processor(args.base)  # refuse before writing
    base = ModelSection(path=args.base, dtype=args.dtype)
    out = merge_lora(base, args.adapter, args.out)
    save_inference_files(out, processor, template)
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from differad_edge.prompts import DEFAULT_TRAIN_TEMPLATE

    parser = OneLineParser(prog=PROG, description="Train DifferAD models: synthetic pairs, SFT cold start, GRPO + DCLR.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True

    s = sub.add_parser("synth", help="synthetic anomaly pairs (Algorithm 1, 25%% normals)")
    s.add_argument("--normals", help="folder of defect-free images (default: procedural products)")
    s.add_argument("--textures", help="folder of texture images (default: procedural textures)")
    s.add_argument("--out", required=True, help="output folder (pairs.jsonl + images)")
    s.add_argument("--count", type=int, required=True, help="number of pairs")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=256, help="image side in pixels")
    s.set_defaults(func=cmd_synth)

    for name, func, help_ in (("sft", cmd_sft, "cold start: supervised fine-tuning (TRL SFTTrainer)"),
                              ("grpo", cmd_grpo, "GRPO with DCLR, resampling and difficulty weighting")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", help="YAML config (see train/configs/)")
        p.add_argument("--merge-lora", action="store_true", help="merge the LoRA adapter into the saved model")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.num_generations=4")
        p.set_defaults(func=func)

    m = sub.add_parser("merge", help="merge a LoRA adapter into its base model (engine-loadable folder)")
    m.add_argument("--base", required=True, help="base checkpoint folder")
    m.add_argument("--adapter", required=True, help="adapter folder (OUT/adapter of a LoRA run)")
    m.add_argument("--out", required=True, help="output folder")
    m.add_argument("--dtype", default="bf16", choices=("fp32", "bf16", "fp16"))
    m.add_argument("--template", default=DEFAULT_TRAIN_TEMPLATE, help="prompt template the adapter was trained with")
    m.set_defaults(func=cmd_merge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)  # KEY=VALUE overrides may come before or after the flags
    stray = [r for r in rest if r.startswith("-") or "=" not in r or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return run_command(PROG, args.func, args)


if __name__ == "__main__":
    sys.exit(main())
