"""``differad dev``: developer tools. ``make-model`` writes a random-weight Qwen3-VL checkpoint offline
(tests, demos and benchmarks need a real architecture without downloading weights); ``--memorized``
trains the tiny one on fixed synthetic pairs so that it gives real answers (``train.fixture``)."""

from __future__ import annotations

import argparse
from pathlib import Path

SIZES = ("tiny", "small", "2b")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dev", help="developer tools (offline test models)")
    dev_sub = p.add_subparsers(dest="dev_command", metavar="TOOL", parser_class=type(p))
    dev_sub.required = True
    m = dev_sub.add_parser(
        "make-model",
        help="write a random-weight Qwen3-VL checkpoint (real architecture, offline tokenizer)",
        description="Loadable by --engine vlm --model DIR exactly like a real checkpoint; no network.",
    )
    m.add_argument("out_dir", type=Path, metavar="DIR", help="folder to write the checkpoint into")
    m.add_argument("--size", choices=SIZES, default="tiny", help="tiny (tests), small (~100M), 2b (real shape)")
    m.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    m.add_argument("--template", metavar="ID", help="prompt template stored with the model (default: no-think)")
    m.add_argument("--overwrite", action="store_true", help="replace an existing non-empty folder")
    m.add_argument(
        "--memorized",
        action="store_true",
        help="train the tiny model until it has memorized 16 synthetic pairs (real, image-dependent "
        "answers on those pairs only; ~1 min on a CPU; needs the train extra)",
    )
    m.set_defaults(func=run_make_model)


def run_make_model(args: argparse.Namespace) -> int:
    if args.memorized:
        from ..errors import ConfigError

        if args.size != "tiny" or args.template:
            raise ConfigError(
                "--memorized trains the tiny model with the default no-think template; drop --size/--template"
            )
        from ..train.fixture import MemorizeSettings, make_memorized_model  # the train extra, on use only

        print(make_memorized_model(args.out_dir, MemorizeSettings(seed=args.seed), overwrite=args.overwrite))
        return 0
    from ..vlm.factory import make_model  # torch/transformers only when this command runs

    path = make_model(args.out_dir, size=args.size, seed=args.seed, template_id=args.template, overwrite=args.overwrite)
    print(path)
    return 0
