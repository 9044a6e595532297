"""GRPO with group-wise resampling and difficulty weighting (paper III-B3, Eq. 8-12) on TRL.

Two hooks on TRL 1.16's ``GRPOTrainer``, both fed by ``_calculate_rewards``, which *gathers* the
rewards of every process before advantages are computed. Every decision below is therefore taken on
complete groups (a group of G completions may be split across ranks) and identically on all ranks:

- resampling (``_generate``): groups whose rewards are all (nearly) equal carry no GRPO signal;
  their rows are generated again, at most ``max_resample_rounds`` times. "Equal" is judged on R_loc
  as the authors do (``resample_on="loc"``) or on the total reward (``"total"``); a group *solved*
  on that signal (every completion at the reward's maximum) is never regenerated: it is flat because
  it is right. Each rank regenerates its own rows of those groups, padded to the same count on every
  rank so that collective operations inside generation (DeepSpeed ZeRO-3 parameter gathers, metric
  gathers) stay in step. TRL's generation metrics (``completions/*``, ``num_tokens``) and
  ``state.num_input_tokens_seen`` are logged once per step, for the completions that are trained on
  (regenerated candidates that were discarded are not counted);
- difficulty weighting (``_generate_and_score_completions``): w = 1/2 (exp(1 - mean R_loc) +
  sqrt(1 + p_miss)) per group, multiplied into the advantages. The clipped policy objective is
  linear in the advantage for a positive scale, so this multiplies each group's policy loss by w
  (Eq. 12). A KL term (``beta > 0``) is left unweighted.

With both switches off the trainer is plain TRL GRPO. After ``zero_advantage_warn_steps`` consecutive
steps whose advantages are all zero (nothing to learn from, even after resampling) a warning says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from trl import GRPOTrainer

from differad_edge.errors import ConfigError

from .rewards import VARIANTS

logger = logging.getLogger(__name__)

LOC_REWARD_NAMES = tuple(f"{v}_reward" for v in VARIANTS)


def difficulty_weight(r_loc: Sequence[float] | np.ndarray, tau: float = 0.3) -> float | np.ndarray:
    """Eq. 9-11 over the last axis: w = 1/2 (exp(1 - mean R_loc) + sqrt(1 + p_miss)), p_miss = share < tau.

    A 1-D input is one group (returns a float); a 2-D input is groups x G (returns one weight per group).
    Hard groups (low reward, many misses) weigh up to (e + sqrt 2) / 2 = 2.07; solved ones 1/2 (1 + 1) = 1.

    >>> round(difficulty_weight([1.0, 1.0, 1.0, 1.0]), 4)
    1.0
    >>> round(difficulty_weight([0.0, 0.0, 0.5, 0.5]), 4)  # mean 0.25, p_miss 0.5
    1.6709
    """
    r = np.asarray(r_loc, dtype=np.float64)
    if r.ndim not in (1, 2) or r.shape[-1] == 0:
        raise ConfigError(f"R_loc must be one group (1-D) or groups x G (2-D), got shape {r.shape}")
    valid = ~np.isnan(r)
    n = np.maximum(valid.sum(axis=-1), 1)
    mean = np.where(valid, r, 0.0).sum(axis=-1) / n
    p_miss = (valid & (r < tau)).sum(axis=-1) / n
    w = 0.5 * (np.exp(1.0 - mean) + np.sqrt(1.0 + p_miss))
    return float(w) if r.ndim == 1 else w


def flat_groups(rewards: Sequence[float] | np.ndarray, G: int, eps: float = 1e-6) -> np.ndarray:
    """Which groups of ``G`` consecutive rewards have (nearly) no spread, max - min <= eps: no GRPO signal.

    >>> flat_groups([1.0, 1.0, 0.2, 0.7], G=2).tolist()
    [True, False]
    """
    r = np.asarray(rewards, dtype=np.float64).ravel()
    if G < 1 or r.size % G:
        raise ConfigError(f"{r.size} rewards do not split into groups of G={G}; expected a multiple of G")
    groups = r.reshape(-1, G)
    filled = np.where(np.isnan(groups), np.inf, groups)
    lo = filled.min(axis=1)
    hi = np.where(np.isnan(groups), -np.inf, groups).max(axis=1)
    return ~(hi - lo > eps)  # all-NaN groups (hi - lo = -inf) count as flat


class DifferadGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` + group-wise resampling + difficulty-weighted group losses (both switchable).

    ``loc_reward`` names the reward function whose outputs are R_loc (default: the one of
    ``rewards.make_localization_reward``, e.g. ``dclr_reward``). ``tau`` defaults to that reward's tau.
    """

    def __init__(
        self,
        *args: Any,
        resample: bool = True,
        max_resample_rounds: int = 2,
        resample_eps: float = 1e-6,
        resample_on: str = "loc",
        zero_advantage_warn_steps: int = 10,
        difficulty_weighting: bool = True,
        loc_reward: str | None = None,
        tau: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if max_resample_rounds < 0:
            raise ConfigError(f"max_resample_rounds={max_resample_rounds} must be >= 0 (0 disables resampling)")
        if resample_on not in ("loc", "total"):
            raise ConfigError(f"resample_on={resample_on!r} is not supported; expected 'loc' (R_loc) or 'total'")
        if resample and (self.use_vllm or self.rollout_func is not None or self.tools):
            raise ConfigError(
                "group resampling supports the transformers generation path only; "
                "set resample=false when using vLLM, a rollout_func or tools"
            )
        self.resample = resample and max_resample_rounds > 0
        self.max_resample_rounds = max_resample_rounds
        self.resample_eps = resample_eps
        self.difficulty_weighting = difficulty_weighting
        needs_loc = difficulty_weighting or (self.resample and resample_on == "loc")
        self._loc_index = self._find_loc_reward(loc_reward) if needs_loc else None
        self.resample_on = resample_on
        self.zero_advantage_warn_steps = zero_advantage_warn_steps
        self.zero_advantage_streak = 0
        loc_func = self.reward_funcs[self._loc_index] if self._loc_index is not None else None
        self.tau = tau if tau is not None else getattr(getattr(loc_func, "params", None), "tau", 0.3)
        self.resample_totals = {"groups": 0, "resampled_groups": 0, "regenerations": 0, "solved_groups": 0}
        self.last_weights: np.ndarray | None = None
        self._batch_inputs: list[dict[str, Any]] | None = None
        self._last_rewards_per_func: torch.Tensor | None = None

    def _find_loc_reward(self, name: str | None) -> int:
        names = list(self.reward_func_names)
        if name is not None:
            if name not in names:
                raise ConfigError(f"loc_reward {name!r} is not among the reward functions {names}")
            return names.index(name)
        found = [i for i, n in enumerate(names) if n in LOC_REWARD_NAMES]
        if len(found) != 1:
            raise ConfigError(
                f"difficulty weighting needs exactly one localization reward among {names} "
                f"(one of {', '.join(LOC_REWARD_NAMES)}); pass loc_reward=NAME"
            )
        return found[0]

    def _mode_and_G(self) -> tuple[str, int]:
        mode = "train" if self.model.training else "eval"
        return mode, self.num_generations if mode == "train" else self.num_generations_eval

    def _calculate_rewards(
        self, inputs: list, prompts: list, completions: list, completion_ids_list: list
    ) -> torch.Tensor:
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards  # gathered over all processes: complete groups
        return rewards

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._batch_inputs = inputs  # _generate needs the solution column to score candidates
        output = super()._generate_and_score_completions(inputs)
        if self.difficulty_weighting:
            output["advantages"] = self._weight_advantages(output["advantages"], len(inputs))
        if self.model.training:
            self._watch_signal(output["advantages"])
        return output

    def _watch_signal(self, advantages: torch.Tensor) -> None:
        """Count consecutive steps with all-zero advantages (every process) and warn at the limit."""
        peak = self.accelerator.gather(advantages.detach().abs().max().reshape(1).float()).max().item()
        self.zero_advantage_streak = self.zero_advantage_streak + 1 if peak < 1e-8 else 0
        n = self.zero_advantage_warn_steps
        if (
            n
            and self.zero_advantage_streak
            and self.zero_advantage_streak % n == 0
            and self.accelerator.is_main_process
        ):
            logger.warning(
                "%d consecutive steps with zero advantage in every group: the policy gets no learning signal "
                "(all completions of a group score the same). Check the format of the answers (a cold-start SFT "
                "helps), raise train.temperature or train.num_generations, or try reward.variant=dclr_code",
                self.zero_advantage_streak,
            )

    def _weight_advantages(self, advantages: torch.Tensor, n_local: int) -> torch.Tensor:
        mode, G = self._mode_and_G()
        rpf = self._last_rewards_per_func
        r_loc = rpf[:, self._loc_index].detach().float().cpu().numpy().reshape(-1, G)
        weights = difficulty_weight(r_loc, self.tau)
        self.last_weights = weights
        per_row = torch.as_tensor(np.repeat(weights, G), dtype=advantages.dtype, device=advantages.device)
        start = self.accelerator.process_index * n_local
        local = per_row[start : start + n_local]
        self._metrics[mode]["difficulty/weight_mean"].append(float(weights.mean()))
        self._metrics[mode]["difficulty/weight_max"].append(float(weights.max()))
        # keep TRL's completion table truthful: it logged the unweighted advantages of all processes
        logged = self._logs["advantages"]
        n_all = per_row.numel()
        if len(logged) >= n_all:
            tail = [logged.pop() for _ in range(n_all)][::-1]
            logged.extend((torch.tensor(tail) * per_row.cpu()).tolist())
        return advantages * (local if advantages.dim() == 1 else local.unsqueeze(1))

    def _resample_signal(self, rpf: torch.Tensor) -> tuple[np.ndarray, float | None]:
        """Per-completion values flatness is judged on, and their maximum (None: unknown)."""
        if self.resample_on == "loc" and self._loc_index is not None:
            func = self.reward_funcs[self._loc_index]
            return rpf[:, self._loc_index].detach().float().cpu().numpy(), getattr(func, "max_value", None)
        weights = self.reward_weights.to(rpf.device)
        maxima = [getattr(f, "max_value", None) for f in self.reward_funcs]
        top = (
            None
            if any(m is None for m in maxima)
            else float(sum(w * m for w, m in zip(weights.tolist(), maxima, strict=True)))
        )
        return (rpf * weights).nansum(dim=1).detach().float().cpu().numpy(), top

    def _generate(self, prompts: list) -> tuple:
        mode, G = self._mode_and_G()
        active = self.resample and mode == "train" and self._batch_inputs is not None
        tokens_before = self.state.num_input_tokens_seen
        marks = {k: len(v) for k, v in self._metrics[mode].items()}
        result = list(super()._generate(prompts))
        if not active:
            return tuple(result)
        n_local = len(prompts)
        rank = self.accelerator.process_index
        ever = first = solved_first = None
        regenerations = rounds = 0
        for _ in range(self.max_resample_rounds):
            rpf = self._calculate_rewards(self._batch_inputs, prompts, result[3], result[1])
            signal, top = self._resample_signal(rpf)
            flat = flat_groups(signal, G, self.resample_eps)
            solved = (
                (np.nan_to_num(signal, nan=-np.inf).reshape(-1, G) >= top - self.resample_eps).all(axis=1)
                if top is not None
                else np.zeros_like(flat)
            )
            redo = flat & ~solved  # a solved group is flat because it is right: never regenerate it
            if first is None:
                first, ever, solved_first = flat.copy(), np.zeros_like(flat), solved.copy()
            if not redo.any():
                break
            ever |= redo
            regenerations += int(redo.sum())
            rounds += 1
            self._regenerate(result, prompts, redo, G, rank, n_local)
        n_groups = len(first)
        self.resample_totals["groups"] += n_groups
        self.resample_totals["resampled_groups"] += int(ever.sum())
        self.resample_totals["regenerations"] += regenerations
        self.resample_totals["solved_groups"] += int(solved_first.sum())
        if regenerations:  # TRL logged each generation call: log once, for the completions kept
            self.state.num_input_tokens_seen = tokens_before
            for key, values in self._metrics[mode].items():
                del values[marks.get(key, 0) :]
            self._log_generation(mode, result[0], result[1])
        self._metrics[mode]["resample/flat_share"].append(float(first.mean()))
        self._metrics[mode]["resample/solved_share"].append(float(solved_first.mean()))
        self._metrics[mode]["resample/rate"].append(float(ever.mean()))
        self._metrics[mode]["resample/regenerated_groups"].append(float(regenerations))
        if regenerations and self.accelerator.is_main_process:
            logger.info("resampled %d flat group(s) of %d in %d round(s)", regenerations, n_groups, rounds)
        return tuple(result)

    def _log_generation(self, mode: str, prompt_ids: list, completion_ids: list) -> None:
        """TRL 1.16's generation metrics (``_generate``, no tools), for the final completions."""
        device = self.accelerator.device
        agg_prompt = self.accelerator.gather(torch.tensor([len(ids) for ids in prompt_ids], device=device))
        agg_len = self.accelerator.gather(torch.tensor([len(ids) for ids in completion_ids], device=device))
        if mode == "train":
            self.state.num_input_tokens_seen += (agg_prompt.sum() + agg_len.sum()).item()
        m = self._metrics[mode]
        m["num_tokens"] = [self.state.num_input_tokens_seen]
        m["completions/mean_length"].append(agg_len.float().mean().item())
        m["completions/min_length"].append(agg_len.float().min().item())
        m["completions/max_length"].append(agg_len.float().max().item())
        eos_and_pad = [*self.eos_token_ids, self._tokenizer.pad_token_id]
        truncated = torch.tensor([ids[-1] not in eos_and_pad for ids in completion_ids], device=device)
        agg_trunc = self.accelerator.gather(truncated)
        m["completions/clipped_ratio"].append(agg_trunc.float().mean().item())
        term = agg_len[~agg_trunc]
        if len(term) == 0:
            term = torch.zeros(1, device=device)
        m["completions/mean_terminated_length"].append(term.float().mean().item())
        m["completions/min_terminated_length"].append(term.float().min().item())
        m["completions/max_terminated_length"].append(term.float().max().item())

    def _regenerate(self, result: list, prompts: list, flat: np.ndarray, G: int, rank: int, n_local: int) -> None:
        """Generate again this rank's rows of the flat groups and splice them into ``result`` in place."""
        rows_global = np.repeat(np.flatnonzero(flat) * G, G) + np.tile(np.arange(G), int(flat.sum()))
        rows = [int(i) - rank * n_local for i in rows_global if rank * n_local <= i < (rank + 1) * n_local]
        count = torch.tensor([len(rows)], device=self.accelerator.device)
        most = int(self.accelerator.gather(count).max().item())
        if most == 0:
            return
        padded = rows + [rows[0] if rows else 0] * (most - len(rows))  # same work on every rank
        sub = super()._generate([prompts[i] for i in padded])
        # TRL's tuple: prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images
        for k in (0, 1, 2, 3, 4, 6, 7):
            if isinstance(result[k], list) and isinstance(sub[k], list) and len(result[k]) == n_local:
                for j, i in enumerate(rows):
                    result[k][i] = sub[k][j]
