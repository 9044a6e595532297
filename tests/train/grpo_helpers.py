"""The one GRPO trainer the train tests build on the tiny model: a single step of one prompt batch on
the CPU, so each test differs from the others only in what it passes (rewards, resampling, callbacks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

G = 2  # completions per prompt
ROWS = 4  # one prompt batch of 4 completions = 2 groups per step
MAX_COMPLETION = 8  # tokens


def tiny_grpo_trainer(
    model_dir: Path,
    pairs: Path,
    reward_funcs: list[Any],
    weights: list[float],
    *,
    cls: type | None = None,
    seed: int = 0,
    callbacks: tuple[Any, ...] | list[Any] = (),
    **kwargs: Any,
) -> Any:
    """``cls`` (default ``DifferadGRPOTrainer``) over the tiny model; ``kwargs`` go to the trainer."""
    from differad_edge.train.data import build_grpo_dataset
    from differad_edge.train.grpo import DifferadGRPOTrainer
    from transformers import Qwen3VLForConditionalGeneration
    from trl import GRPOConfig

    from differad_edge.vlm.loader import load_processor

    torch.set_num_threads(2)
    args = GRPOConfig(
        output_dir=str(model_dir.parent / "unused_trainer_out"),
        use_cpu=True,
        per_device_train_batch_size=ROWS,
        num_generations=G,
        max_completion_length=MAX_COMPLETION,
        max_steps=1,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        temperature=0.9,
        seed=seed,
        reward_weights=weights,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    if callbacks:
        kwargs["callbacks"] = list(callbacks)
    return (cls or DifferadGRPOTrainer)(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=build_grpo_dataset(pairs, limit=ROWS),
        processing_class=load_processor(model_dir),
        **kwargs,
    )
