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


def _refuse_existing(path: str, overwrite: bool, flag: str = "--out") -> None:
    """An existing non-empty folder is replaced only with ``--overwrite`` (never silently)."""
    from pathlib import Path

    p = Path(path)
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        if not overwrite:
            raise ConfigError(
                f"{flag} {p} exists and is not empty; pass --overwrite to replace it or choose a new folder"
            )
        if p.is_dir():
            import shutil

            shutil.rmtree(p)
        else:
            p.unlink()


def cmd_synth(args: argparse.Namespace) -> int:
    from differad_edge.synth import generate_dataset

    if args.count < 1:
        raise ConfigError(f"--count {args.count} must be >= 1")
    _refuse_existing(args.out, args.overwrite)
    path = generate_dataset(
        args.out, args.count, args.seed, normals=args.normals, textures=args.textures, size=args.size
    )
    print(path)
    return 0


def _job(kind: str, args: argparse.Namespace) -> object:
    from .config import load_config

    overrides = list(args.overrides)
    if args.merge_lora:
        overrides.append("merge_lora=true")
    return load_config(kind, args.config, overrides)


def _print_config(job: object) -> int:
    import yaml

    from .config import dump_config

    print(yaml.safe_dump(dump_config(job), sort_keys=False), end="")  # type: ignore[arg-type]
    return 0


def cmd_grpo(args: argparse.Namespace) -> int:
    job = _job("grpo", args)
    if args.print_config:
        return _print_config(job)
    from .jobs import run_grpo

    print(run_grpo(job, overwrite=args.overwrite))  # type: ignore[arg-type]
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    job = _job("sft", args)
    if args.print_config:
        return _print_config(job)
    from .jobs import run_sft

    print(run_sft(job, overwrite=args.overwrite))  # type: ignore[arg-type]
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from differad_edge.vlm.loader import load_processor

    from .config import ModelSection, resolve_template
    from .modeling import merge_lora, save_inference_files

    _refuse_existing(args.out, args.overwrite)
    template, processor = resolve_template(args.template, args.base), load_processor(args.base)  # refuse first
    base = ModelSection(path=args.base, dtype=args.dtype)
    out = merge_lora(base, args.adapter, args.out)
    save_inference_files(out, processor, template)
    print(out)
    return 0


def _shipped() -> list[str]:
    from .config import shipped_configs

    return list(shipped_configs())


def config_keys_help(kind: str) -> str:
    """Every config key with its default, for ``--help`` (so a person need not read the source)."""
    from .config import JOBS

    lines = ["config keys (KEY=VALUE overrides, or YAML sections):"]
    job = JOBS[kind]
    for section, field in job.model_fields.items():
        ann = field.annotation
        sub = getattr(ann, "model_fields", None)
        if sub is None:
            lines.append(f"  {section}  (default {field.get_default(call_default_factory=True)!r})")
            continue
        for key, f in sub.items():
            default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
            lines.append(f"  {section}.{key}  {default}" + (f"  {f.description}" if f.description else ""))
    trl = "GRPOConfig" if kind == "grpo" else "SFTConfig"
    lines.append(
        f"  train.<any field of trl.{trl} / transformers.TrainingArguments>  passed through, "
        "validated by TRL (e.g. train.lr_scheduler_type=cosine train.weight_decay=0.01)"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from differad_edge.prompts import DEFAULT_TRAIN_TEMPLATE

    parser = OneLineParser(
        prog=PROG, description="Train DifferAD models: synthetic pairs, SFT cold start, GRPO + DCLR."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True

    s = sub.add_parser("synth", help="synthetic anomaly pairs (Algorithm 1, 25%% normals)")
    s.add_argument("--normals", help="folder of defect-free images (default: procedural products)")
    s.add_argument("--textures", help="folder of texture images (default: procedural textures)")
    s.add_argument("--out", required=True, help="output folder (pairs.jsonl + images)")
    s.add_argument("--count", type=int, required=True, help="number of pairs")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=256, help="image side in pixels")
    s.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder")
    s.set_defaults(func=cmd_synth)

    for name, func, help_ in (
        ("sft", cmd_sft, "cold start: supervised fine-tuning (TRL SFTTrainer)"),
        ("grpo", cmd_grpo, "GRPO with DCLR, resampling and difficulty weighting"),
    ):
        p = sub.add_parser(
            name, help=help_, epilog=config_keys_help(name), formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.add_argument("--config", help="YAML file or shipped config name (" + ", ".join(_shipped()) + ")")
        p.add_argument("--merge-lora", action="store_true", help="merge the LoRA adapter into the saved model")
        p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output_dir")
        p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.num_generations=4")
        p.set_defaults(func=func)

    m = sub.add_parser("merge", help="merge a LoRA adapter into its base model (engine-loadable folder)")
    m.add_argument("--base", required=True, help="base checkpoint folder")
    m.add_argument("--adapter", required=True, help="adapter folder (OUT/adapter of a LoRA run)")
    m.add_argument("--out", required=True, help="output folder")
    m.add_argument("--dtype", default="bf16", choices=("fp32", "bf16", "fp16"))
    m.add_argument(
        "--template",
        default=DEFAULT_TRAIN_TEMPLATE,
        help="prompt template the adapter was trained with (id, JSON file, or 'model')",
    )
    m.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder")
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
