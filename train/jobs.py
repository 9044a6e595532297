"""Run a GRPO or SFT job from its validated config and leave an engine-loadable checkpoint.

Output folder layout::

    OUT/                    config.json + *.safetensors (full fine-tune, or LoRA merged), processor,
                            differad_prompt.json, train_config.yaml, train_log.jsonl, train_summary.json,
                            train_curves.png
    OUT/adapter/            the LoRA adapter (LoRA runs)
    OUT/checkpoints/        the trainer's periodic checkpoints
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from differad_edge.errors import ConfigError, missing_extra
from differad_edge.fileio import atomic_write_json, atomic_write_text
from differad_edge.prompts import get_template

from .config import GRPOJob, SFTJob, dump_config
from .modeling import ADAPTER_DIR, load_policy, merge_lora, save_inference_files

logger = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "train_summary.json"
CURVES_FILE = "train_curves.png"
#: What the per-step console line shows (when logged): reward parts, resampling, difficulty weight.
STEP_KEYS = ("loss", "reward", "rewards/format_reward/mean", "resample/rate", "difficulty/weight_mean")


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


def _trainer_callback(out: Path) -> Any:
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        """Writes every log entry to ``train_log.jsonl`` and prints the key numbers of each step."""

        def __init__(self) -> None:
            self.path = out / LOG_FILE

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                atomic_write_text(self.path, "")  # a fresh log per run

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
            with open(self.path, "a", encoding="utf-8") as f:  # append-only: one line per logged step
                f.write(json.dumps(row) + "\n")
            shown = [f"{k.split('/')[-2] if k.count('/') > 1 else k}={logs[k]:.4g}" for k in STEP_KEYS
                     if isinstance(logs.get(k), (int, float))]
            loc = [f"{k.split('/')[1]}={v:.4g}" for k, v in logs.items()
                   if k.startswith("rewards/") and k.endswith("/mean") and "format" not in k]
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


def _common_args(job: GRPOJob | SFTJob, out: Path) -> dict[str, Any]:
    t, m = job.train, job.model
    return dict(
        output_dir=str(out / "checkpoints"),
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


def _finish(trainer: Any, job: GRPOJob | SFTJob, processor: Any, out: Path, summary: dict[str, Any]) -> Path:
    """Save weights (merging LoRA on request), processor, prompt, config and summary into ``out``."""
    template = get_template(job.data.template)
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
    summary = {**summary, "steps": trainer.state.global_step, "last_log": history[-1] if history else {},
               "template": template.id, "lora": job.lora.enabled, "merged": bool(job.lora.enabled and job.merge_lora)}
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


def plot_curves(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Reward components, resample rate and difficulty weight per step, one panel each."""
    keys = sorted({k for h in history for k in h if k.startswith("rewards/") and k.endswith("/mean")})
    keys += [k for k in ("reward", "resample/rate", "difficulty/weight_mean", "loss") if any(k in h for h in history)]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(keys), 1, figsize=(6, 1.8 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        pts = [(h["step"], h[key]) for h in history if isinstance(h.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
        ax.set_ylabel(key.replace("rewards/", "").replace("/mean", ""), fontsize=8)
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
    funcs, weights = make_reward_funcs(r.variant, require_think=job.think, format_weight=r.format_weight,
                                       loc_weight=r.loc_weight, alpha=p.alpha, lam=p.lam, tau=p.tau, delta=p.delta)
    extras = [import_callable(s) for s in r.extra] + list(extra or [])
    extra_weights = list(r.extra_weights or [1.0] * len(r.extra)) + [1.0] * len(extra or [])
    return funcs + extras, weights + extra_weights


def run_grpo(job: GRPOJob, extra_rewards: list[Callable[..., Any]] | None = None) -> Path:
    """Train with DifferadGRPOTrainer; returns the output folder."""
    try:
        from trl import GRPOConfig
    except ImportError as e:
        raise missing_extra("trl", "train") from e
    from .data import build_grpo_dataset
    from .grpo import DifferadGRPOTrainer

    out = Path(job.output_dir)
    dataset = build_grpo_dataset(job.data.pairs, job.data.template, job.data.seed, job.data.paraphrase, job.data.limit)
    funcs, weights = build_rewards(job, extra_rewards)
    model, processor = load_policy(job.model, job.lora)
    t = job.train
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
            model=model, reward_funcs=funcs, args=args, train_dataset=dataset, processing_class=processor,
            callbacks=[_trainer_callback(out)], resample=t.resample, max_resample_rounds=t.max_resample_rounds,
            resample_eps=t.resample_eps, difficulty_weighting=t.difficulty_weighting, tau=job.reward.tau,
        )
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused config or dataset leaves nothing behind
    trainer.train()
    summary = {"kind": "grpo", "resample": trainer.resample_totals, "reward_functions": trainer.reward_func_names,
               "world_size": trainer.accelerator.num_processes}
    return _finish(trainer, job, processor, out, summary)


def run_sft(job: SFTJob) -> Path:
    """Cold start: supervised fine-tuning on the pairs with ``<think>..</think><answer>box</answer>`` targets."""
    try:
        from trl import SFTConfig, SFTTrainer
    except ImportError as e:
        raise missing_extra("trl", "train") from e
    from .data import build_sft_dataset

    out = Path(job.output_dir)
    dataset = build_sft_dataset(job.data.pairs, job.data.template, job.data.seed, job.data.paraphrase, job.data.limit)
    dataset = dataset.select_columns(["prompt", "completion", "images"])
    model, processor = load_policy(job.model, job.lora)
    with _trl_config_errors("sft"):
        args = SFTConfig(**_common_args(job, out), max_length=job.train.max_length)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                             callbacks=[_trainer_callback(out)])
    out.mkdir(parents=True, exist_ok=True)
    trainer.train()
    return _finish(trainer, job, processor, out, {"kind": "sft", "world_size": trainer.accelerator.num_processes})
