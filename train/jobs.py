"""Run a GRPO or SFT job from its validated config and leave an engine-loadable checkpoint.

Output folder layout::

    OUT/                    config.json + *.safetensors (full fine-tune, or LoRA merged), processor,
                            differad_prompt.json, train_config.yaml, train_log.jsonl, train_summary.json,
                            train_curves.png
    OUT/adapter/            the LoRA adapter (LoRA runs)
    OUT/checkpoints/checkpoint-N/   the trainer's periodic checkpoints, each a complete model folder
                            (processor and differad_prompt.json added; LoRA runs: merged weights in
                            checkpoint-N/merged/), so ``differad eval --engine vlm --model`` scores
                            any of them with the prompt it was trained with

Before anything heavy: the output folder must be new or empty (``--overwrite`` replaces it;
``train.resume_from_checkpoint`` continues in it), ``report_to`` back-ends must be installed, and
without a CUDA device the run is switched to CPU in fp32 (bf16 weights would train without fp32
master copies), with one log line saying so.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from differad_edge.errors import ConfigError, missing_extra
from differad_edge.fileio import atomic_write_json, atomic_write_text
from differad_edge.prompts import PromptTemplate

from .config import GRPOJob, SFTJob, dump_config
from .modeling import ADAPTER_DIR, load_policy, merge_lora, save_inference_files

logger = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "train_summary.json"
CURVES_FILE = "train_curves.png"
#: What the per-step console line shows (when logged): reward parts, resampling, difficulty weight.
STEP_KEYS = ("loss", "reward", "rewards/format_reward/mean", "resample/rate", "difficulty/weight_mean")
CHECKPOINTS_DIR = "checkpoints"
MERGED_DIR = "merged"
#: report_to back-end -> (importable module(s), extra that installs it)
REPORTERS = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"), "wandb": (("wandb",), "wandb")}


def import_callable(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function (extra reward functions named in a config)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"reward {spec!r} is not 'module:function'; expected e.g. mypkg.rewards:my_reward")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import reward {spec!r}: {e}; check the module is on PYTHONPATH") from e
    if not callable(func):
        raise ConfigError(f"reward {spec!r} is not callable")
    return func


def append_log_row(out: Path, row: dict[str, Any]) -> None:
    """One JSON line in ``train_log.jsonl`` (numbers only)."""
    clean = {k: v for k, v in row.items() if isinstance(v, (int, float))}
    with open(out / LOG_FILE, "a", encoding="utf-8") as f:  # append-only: one line per logged step
        f.write(json.dumps(_finite(clean)) + "\n")


def _trainer_callback(out: Path, resume: bool = False) -> Any:
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        """Writes every log entry to ``train_log.jsonl`` and prints the key numbers of each step."""

        def __init__(self) -> None:
            self.path = out / LOG_FILE

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero and not (resume and self.path.exists()):
                atomic_write_text(self.path, "")  # a fresh log per run (a resumed run appends)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            append_log_row(out, {"step": state.global_step, **logs})
            shown = [
                f"{k.split('/')[-2] if k.count('/') > 1 else k}={logs[k]:.4g}"
                for k in STEP_KEYS
                if isinstance(logs.get(k), (int, float))
            ]
            loc = [
                f"{k.split('/')[1]}={v:.4g}"
                for k, v in logs.items()
                if k.startswith("rewards/") and k.endswith("/mean") and "format" not in k
            ]
            if shown or loc:
                logger.info("step %d: %s", state.global_step, " ".join(shown + loc))

    return StepLog()


@contextmanager
def _trl_config_errors(kind: str) -> Iterator[None]:
    """TRL/transformers reject inconsistent settings with ValueError; make it our one-line config error."""
    try:
        yield
    except ValueError as e:
        raise ConfigError(f"invalid {kind} config: {' '.join(str(e).split())}; fix the YAML or the overrides") from e


def prepare_run(job: GRPOJob | SFTJob, overwrite: bool = False) -> str | bool | None:
    """Checks and settings decided before any model is loaded; returns what to resume from.

    - the output folder: new or empty, or ``overwrite`` (replaced later, once the trainer is built),
      or a resume (``train.resume_from_checkpoint``: true = its last checkpoint);
    - ``report_to`` back-ends installed (one line naming the extra otherwise);
    - no CUDA device: ``use_cpu`` and fp32 weights, with one line saying so.
    """
    out = Path(job.output_dir)
    resume = job.train.resume_from_checkpoint
    if resume is True or (isinstance(resume, str) and resume.lower() == "true"):
        found = _last_checkpoint(out / CHECKPOINTS_DIR)
        if found is None:
            raise ConfigError(
                f"train.resume_from_checkpoint=true but {out / CHECKPOINTS_DIR} holds no checkpoint-N "
                "folder; pass a checkpoint folder or drop the key"
            )
        resume = str(found)
    elif isinstance(resume, str) and not Path(resume).is_dir():
        raise ConfigError(
            f"train.resume_from_checkpoint={resume!r} is not a folder; pass a checkpoint-N folder or true"
        )
    elif resume is False:
        resume = None
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir {out} exists and is not a folder; choose another path")
    # only the main process judges the folder: another rank may start after rank 0 has begun writing into it
    if _is_main_process() and out.is_dir() and any(out.iterdir()) and not overwrite and not resume:
        raise ConfigError(
            f"output_dir {out} exists and is not empty; pass --overwrite to replace it, "
            "train.resume_from_checkpoint=true to continue it, or choose a new folder"
        )
    for name in job.train.report_to:
        if name in REPORTERS:
            modules, extra = REPORTERS[name]
            if not any(importlib.util.find_spec(m) for m in modules):
                raise missing_extra(modules[0], extra)
    import torch

    if not torch.cuda.is_available() and (not job.train.use_cpu or job.model.dtype != "fp32"):
        logger.info(
            "no CUDA device: training on the CPU in fp32 (train.use_cpu=true, model.dtype=fp32; was %s)",
            job.model.dtype,
        )
        job.train.use_cpu = True
        job.model.dtype = "fp32"
    return resume


def _is_main_process() -> bool:
    """Rank 0 of an ``accelerate``/``torchrun`` launch (or a single process), before accelerate is set up."""
    return os.environ.get("RANK", "0") == "0"


def _last_checkpoint(folder: Path) -> Path | None:
    steps = (
        [
            (int(p.name.split("-")[1]), p)
            for p in folder.glob("checkpoint-*")
            if p.is_dir() and p.name.split("-")[1].isdigit()
        ]
        if folder.is_dir()
        else []
    )
    return max(steps)[1] if steps else None


def _start_output(out: Path, overwrite: bool, resume: str | bool | None) -> None:
    """Create the output folder; ``overwrite`` replaces an existing one (never for a resume)."""
    if overwrite and not resume and _is_main_process() and out.is_dir() and any(out.iterdir()):
        logger.info("--overwrite: replacing %s", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _common_args(job: GRPOJob | SFTJob, out: Path) -> dict[str, Any]:
    t, m = job.train, job.model
    typed = dict(
        output_dir=str(out / CHECKPOINTS_DIR),
        use_cpu=t.use_cpu,
        bf16=m.dtype == "bf16" and not t.use_cpu,
        fp16=m.dtype == "fp16",
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        logging_steps=t.logging_steps,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        deepspeed=t.deepspeed,
        report_to=t.report_to,
        dataloader_num_workers=t.dataloader_num_workers,
        gradient_checkpointing=m.gradient_checkpointing,
        remove_unused_columns=False,
    )
    return {**typed, **t.trl_extra()}  # pass-through keys: TRL validates them


def checkpoint_callback(job: GRPOJob | SFTJob, processor: Any, template: PromptTemplate) -> Any:
    """Makes every trainer checkpoint a complete model folder: processor + prompt template beside the
    weights (full fine-tune), or a merged model in ``checkpoint-N/merged`` (LoRA)."""
    from transformers import TrainerCallback

    class CompleteCheckpoints(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not ckpt.is_dir():
                return
            target = ckpt
            if job.lora.enabled:
                target = merge_lora(job.model, ckpt, ckpt / MERGED_DIR)
            save_inference_files(target, processor, template)
            logger.info("checkpoint %s: complete model folder %s", state.global_step, target)

    return CompleteCheckpoints()


def _diagnostics(job: GRPOJob | SFTJob, processor: Any, template: PromptTemplate, out: Path) -> tuple[list, Any]:
    """(training pairs, diagnostics callback or None): the held-out split and its evaluator."""
    from differad_edge.dataset import pair_box_model_scale

    from .data import load_pairs, split_pairs
    from .diagnostics import HeldOut, diagnostics_callback

    d = job.diagnostics
    pairs = load_pairs(job.data.pairs, job.data.limit)
    if not d.enabled:
        return pairs, None
    if d.eval_pairs:
        train, held = pairs, load_pairs(d.eval_pairs)
    else:
        train, held = split_pairs(pairs, d.eval_fraction, d.min_train, job.data.seed)
    if not held:
        logger.info(
            "diagnostics: %d pairs are too few to hold some out (min_train=%d); no held-out evaluation",
            len(pairs),
            d.min_train,
        )
        return pairs, None
    held = held[: d.max_eval]
    tokens = d.max_new_tokens or getattr(job.train, "max_completion_length", None) or (256 if template.think else 32)
    logger.info("diagnostics: %d training pairs, %d held out, evaluated every %d steps", len(train), len(held), d.steps)
    cb = diagnostics_callback(
        HeldOut.from_pairs(held, template),
        [pair_box_model_scale(p) for p in train],
        processor,
        template,
        d.steps,
        tokens,
        d.image_check,
        lambda row: append_log_row(out, row),
    )
    return train, cb


def _finish(trainer: Any, job: GRPOJob | SFTJob, processor: Any, out: Path, summary: dict[str, Any]) -> Path:
    """Save weights (merging LoRA on request), processor, prompt, config and summary into ``out``."""
    template = job.template
    target = out / ADAPTER_DIR if job.lora.enabled else out
    trainer.save_model(str(target))  # every rank: DeepSpeed ZeRO-3 gathers the shards here
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:
        return out
    (target / "training_args.bin").unlink(missing_ok=True)  # a pickle; train_config.yaml says the same
    if job.lora.enabled and job.merge_lora:
        merge_lora(job.model, target, out)
    save_inference_files(out, processor, template)
    atomic_write_text(out / "train_config.yaml", yaml.safe_dump(dump_config(job), sort_keys=False))
    history = [h for h in trainer.state.log_history if "loss" in h or "reward" in h]
    diag = [h for h in trainer.state.log_history if "diag/acc30" in h]
    summary = {
        **summary,
        "steps": trainer.state.global_step,
        "last_log": history[-1] if history else {},
        "diagnostics": {"first": diag[0], "last": diag[-1]} if diag else None,
        "template": template.id,
        "lora": job.lora.enabled,
        "merged": bool(job.lora.enabled and job.merge_lora),
    }
    atomic_write_json(out / SUMMARY_FILE, _finite(summary))
    plot_curves(trainer.state.log_history, out / CURVES_FILE)
    return out


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


#: Held-out panels of the curves: (title, model key, baseline keys drawn as lines).
DIAG_PANELS = (
    ("held-out Acc@0.3", "diag/acc30", ("diag/zero_acc30", "diag/fixed_acc30")),
    ("held-out mIoU", "diag/miou", ("diag/zero_miou", "diag/fixed_miou")),
    ("held-out F1@0.3", "diag/f1", ("diag/zero_f1", "diag/fixed_f1")),
    ("held-out valid rate", "diag/valid_rate", ()),
)


def plot_curves(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Reward components, resample rate, difficulty weight, loss per step; then the held-out metrics
    beside the always-zero and best-fixed-box baselines, and the image-use check (real vs shuffled)."""
    keys = sorted({k for h in history for k in h if k.startswith("rewards/") and k.endswith("/mean")})
    keys += [k for k in ("reward", "resample/rate", "difficulty/weight_mean", "loss") if any(k in h for h in history)]
    diag = [d for d in DIAG_PANELS if any(d[1] in h for h in history)]
    image_check = any("diag/loss_real" in h for h in history)
    n = len(keys) + len(diag) + int(image_check)
    if not n:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[float], list[float]]:
        pts = [(h["step"], h[key]) for h in history if isinstance(h.get(key), (int, float)) and "step" in h]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(n, 1, figsize=(6, 1.8 * n), sharex=True, squeeze=False)
    panels = iter(axes[:, 0])
    for key in keys:
        ax = next(panels)
        ax.plot(*series(key), marker="o", ms=3)
        ax.set_ylabel(key.replace("rewards/", "").replace("/mean", ""), fontsize=8)
    for title, key, base in diag:
        ax = next(panels)
        ax.plot(*series(key), marker="o", ms=3, label="model")
        for b, style in zip(base, ("--", ":"), strict=False):
            xs, ys = series(b)
            if ys:
                ax.axhline(ys[-1], ls=style, color="gray", label="always zero box" if "zero" in b else "best fixed box")
        ax.set_ylabel(title, fontsize=8)
        ax.legend(fontsize=6, loc="best")
    if image_check:
        ax = next(panels)
        ax.plot(*series("diag/loss_real"), marker="o", ms=3, label="real image pairs")
        ax.plot(*series("diag/loss_shuffled"), marker="x", ms=3, label="shuffled image pairs")
        ax.set_ylabel("held-out answer loss", fontsize=8)
        ax.legend(fontsize=6, loc="best")
    for ax in axes[:, 0]:
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path


def build_rewards(job: GRPOJob, extra: list[Callable[..., Any]] | None = None) -> tuple[list[Any], list[float]]:
    """The paper's R = R_fmt + R_loc (weights from the config) plus any extra reward functions."""
    from .rewards import make_reward_funcs

    r = job.reward
    p = r.params()
    funcs, weights = make_reward_funcs(
        r.variant,
        require_think=job.think,
        format_weight=r.format_weight,
        loc_weight=r.loc_weight,
        alpha=p.alpha,
        lam=p.lam,
        tau=p.tau,
        delta=p.delta,
    )
    extras = [import_callable(s) for s in r.extra] + list(extra or [])
    extra_weights = list(r.extra_weights or [1.0] * len(r.extra)) + [1.0] * len(extra or [])
    return funcs + extras, weights + extra_weights


def run_grpo(job: GRPOJob, extra_rewards: list[Callable[..., Any]] | None = None, overwrite: bool = False) -> Path:
    """Train with DifferadGRPOTrainer; returns the output folder."""
    try:
        from trl import GRPOConfig
    except ImportError as e:
        raise missing_extra("trl", "train") from e
    from .data import build_grpo_dataset
    from .grpo import DifferadGRPOTrainer

    out = Path(job.output_dir)
    resume = prepare_run(job, overwrite)
    template = job.template
    funcs, weights = build_rewards(job, extra_rewards)
    model, processor = load_policy(job.model, job.lora)
    train_pairs, diag = _diagnostics(job, processor, template, out)
    dataset = build_grpo_dataset(train_pairs, template, job.data.seed, job.data.paraphrase)
    t = job.train
    callbacks = [_trainer_callback(out, bool(resume)), checkpoint_callback(job, processor, template)]
    with _trl_config_errors("grpo"):
        args = GRPOConfig(
            **_common_args(job, out),
            num_generations=t.num_generations,
            temperature=t.temperature,
            max_completion_length=t.max_completion_length,
            beta=t.beta,
            loss_type=t.loss_type,
            scale_rewards=t.scale_rewards,
            reward_weights=weights,
            log_completions=t.log_completions,
        )
        trainer = DifferadGRPOTrainer(
            model=model,
            reward_funcs=funcs,
            args=args,
            train_dataset=dataset,
            processing_class=processor,
            callbacks=callbacks + ([diag] if diag else []),
            resample=t.resample,
            max_resample_rounds=t.max_resample_rounds,
            resample_eps=t.resample_eps,
            resample_on=t.resample_on,
            zero_advantage_warn_steps=t.zero_advantage_warn_steps,
            difficulty_weighting=t.difficulty_weighting,
            tau=job.reward.tau,
        )
    _start_output(out, overwrite, resume)  # only now: a refused config or dataset leaves nothing behind
    trainer.train(resume_from_checkpoint=resume)
    summary = {
        "kind": "grpo",
        "resample": trainer.resample_totals,
        "reward_functions": trainer.reward_func_names,
        "world_size": trainer.accelerator.num_processes,
        "baselines": getattr(diag, "baselines", None),
        "resumed_from": resume,
    }
    return _finish(trainer, job, processor, out, summary)


def run_sft(job: SFTJob, overwrite: bool = False) -> Path:
    """Cold start: supervised fine-tuning on the pairs with ``<think>..</think><answer>box</answer>`` targets."""
    try:
        from trl import SFTConfig, SFTTrainer
    except ImportError as e:
        raise missing_extra("trl", "train") from e
    from .data import build_sft_dataset

    out = Path(job.output_dir)
    resume = prepare_run(job, overwrite)
    template = job.template
    model, processor = load_policy(job.model, job.lora)
    train_pairs, diag = _diagnostics(job, processor, template, out)
    dataset = build_sft_dataset(train_pairs, template, job.data.seed, job.data.paraphrase)
    dataset = dataset.select_columns(["prompt", "completion", "images"])
    callbacks = [_trainer_callback(out, bool(resume)), checkpoint_callback(job, processor, template)]
    with _trl_config_errors("sft"):
        args = SFTConfig(**_common_args(job, out), max_length=job.train.max_length)
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=processor,
            callbacks=callbacks + ([diag] if diag else []),
        )
    _start_output(out, overwrite, resume)
    trainer.train(resume_from_checkpoint=resume)
    return _finish(
        trainer,
        job,
        processor,
        out,
        {
            "kind": "sft",
            "world_size": trainer.accelerator.num_processes,
            "baselines": getattr(diag, "baselines", None),
            "resumed_from": resume,
        },
    )
