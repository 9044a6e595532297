"""Training for DifferAD-R1 on Hugging Face TRL (installs as ``differad_edge.train``).

- ``rewards``: R_fmt and the localization rewards (DCLR, the authors' code and ablation variants, IoU, S_cons) as TRL reward functions;
- ``grpo``: ``DifferadGRPOTrainer`` (group resampling + difficulty weighting), ``difficulty_weight``, ``flat_groups``;
- ``data``: pairs JSONL -> ``datasets.Dataset`` for GRPO / SFT;
- ``config``: typed GRPO / SFT job configs (YAML + ``key=value`` overrides);
- ``modeling`` / ``jobs``: policy model (LoRA, QLoRA, frozen vision), runs and engine-loadable checkpoints;
- ``diagnostics``: held-out metrics beside the always-zero / best-fixed-box baselines, image-use check;
- ``fixture``: ``make_memorized_model``, a tiny Qwen3-VL with real answers on its own pairs (tests);
- ``cli``: the ``differad-train`` command.

Only ``rewards`` is imported here: the rest pulls in torch/TRL and is imported on use.
"""

from .rewards import (
    DCLRParams,
    center_authors_reward,
    center_reward,
    consistency,
    dclr_code_reward,
    dclr_reward,
    format_reward,
    iou_authors_reward,
    iou_reward,
    localization_reward,
    make_localization_reward,
    make_reward_funcs,
)

__all__ = [
    "DCLRParams",
    "center_authors_reward",
    "center_reward",
    "consistency",
    "dclr_code_reward",
    "dclr_reward",
    "format_reward",
    "iou_authors_reward",
    "iou_reward",
    "localization_reward",
    "make_localization_reward",
    "make_reward_funcs",
]
