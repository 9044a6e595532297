"""Difficulty weight, flat-group detection, and DifferadGRPOTrainer on the tiny model (CPU, real TRL)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from differad_edge.train.grpo import difficulty_weight, flat_groups
from differad_edge.train.rewards import make_reward_funcs
from grpo_helpers import G, tiny_grpo_trainer

from differad_edge.errors import ConfigError

E = math.e


@pytest.mark.parametrize(
    ("r_loc", "expected"),
    [
        ([1.0, 1.0, 1.0, 1.0], 0.5 * (1 + 1)),  # solved: mean 1, no miss -> 1
        ([0.0, 0.0, 0.0, 0.0], 0.5 * (E + math.sqrt(2))),  # hopeless: mean 0, all miss -> max weight
        ([0.0, 0.0, 0.5, 0.5], 0.5 * (math.exp(0.75) + math.sqrt(1.5))),  # mean 0.25, half miss
        ([0.29, 0.3, 0.31, 1.0], 0.5 * (math.exp(1 - 0.475) + math.sqrt(1.25))),  # tau=0.3: only 0.29 misses
    ],
)
def test_difficulty_weight_formula(r_loc, expected) -> None:
    assert difficulty_weight(r_loc, tau=0.3) == pytest.approx(expected)


def test_difficulty_weight_vectorised_and_monotone() -> None:
    groups = np.array([[1.0, 1.0], [0.5, 0.5], [0.0, 0.0]])
    w = difficulty_weight(groups, tau=0.3)
    assert w.shape == (3,)
    assert w[0] < w[1] < w[2]  # harder groups weigh more
    assert w[1] == pytest.approx(0.5 * (math.exp(0.5) + 1.0))
    with pytest.raises(ConfigError):
        difficulty_weight(np.zeros((2, 2, 2)))


def test_flat_groups() -> None:
    r = [0.5, 0.5, 0.5, 0.5, 0.1, 0.9, 0.3, 0.3]
    assert flat_groups(r, G=4).tolist() == [True, False]
    assert flat_groups(r, G=2).tolist() == [True, True, False, True]
    assert flat_groups([0.5, 0.5 + 1e-9], G=2).tolist() == [True]  # nearly equal counts as flat
    assert flat_groups([0.5, 0.5 + 1e-3], G=2, eps=1e-2).tolist() == [True]
    assert flat_groups([float("nan"), 0.2, float("nan"), float("nan")], G=2).tolist() == [True, True]
    with pytest.raises(ConfigError, match="groups of G=4"):
        flat_groups([1.0, 2.0, 3.0], G=4)


# --- the trainer on the tiny model ------------------------------------------------------------


def _trainer(cls, model_dir, pairs, reward_funcs, weights, seed=0, **kwargs):
    return tiny_grpo_trainer(model_dir, pairs, reward_funcs, weights, cls=cls, seed=seed, **kwargs)


def _hash_reward():
    import zlib

    def text_hash_reward(completions, **kwargs):
        return [(zlib.crc32(c[-1]["content"].encode()) % 1000) / 1000 for c in completions]

    return text_hash_reward


@pytest.mark.slow
def test_resampling_fires_on_flat_groups_only(tiny_model_dir, synth_pairs) -> None:
    from differad_edge.train.grpo import DifferadGRPOTrainer

    funcs, weights = make_reward_funcs("dclr")  # a random model never answers in format: every group flat
    flat = _trainer(DifferadGRPOTrainer, tiny_model_dir, synth_pairs, funcs, weights, max_resample_rounds=2)
    flat.train()
    n_groups = 4 // G
    assert flat.resample_totals == {
        "groups": n_groups,
        "resampled_groups": n_groups,
        "regenerations": 2 * n_groups,
        "solved_groups": 0,
    }
    log = flat.state.log_history[0]
    assert log["resample/flat_share"] == 1.0
    assert log["resample/rate"] == 1.0

    funcs, weights = make_reward_funcs("dclr")
    varied = _trainer(
        DifferadGRPOTrainer, tiny_model_dir, synth_pairs, funcs + [_hash_reward()], weights + [1.0], resample_on="total"
    )  # the total has a signal (R_loc alone is flat)
    varied.train()
    assert varied.resample_totals["regenerations"] == 0
    assert varied.state.log_history[0]["resample/rate"] == 0.0


@pytest.mark.slow
def test_switches_off_is_plain_grpo_and_weighting_scales_advantages(tiny_model_dir, synth_pairs) -> None:
    from differad_edge.train.grpo import DifferadGRPOTrainer
    from trl import GRPOTrainer

    def run(cls, **kw):
        funcs, weights = make_reward_funcs("dclr")
        hash_reward = _hash_reward()
        tr = _trainer(cls, tiny_model_dir, synth_pairs, funcs + [hash_reward], weights + [1.0], **kw)
        tr.train()
        params = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
        return tr, list(tr._logs["advantages"]), list(tr._logs["completion"]), params

    plain, adv_plain, comp_plain, p_plain = run(GRPOTrainer)
    off, adv_off, comp_off, p_off = run(DifferadGRPOTrainer, resample=False, difficulty_weighting=False)
    assert comp_off == comp_plain
    assert adv_off == pytest.approx(adv_plain, abs=1e-7)
    assert any(abs(a) > 1e-3 for a in adv_plain)  # there was a signal to compare
    assert all(torch.allclose(p_plain[n], p_off[n], atol=1e-7) for n in p_plain)

    on, adv_on, comp_on, _ = run(
        DifferadGRPOTrainer, resample=False, difficulty_weighting=True, loc_reward="text_hash_reward"
    )
    assert comp_on == comp_plain  # weighting does not change sampling
    r_loc = np.array(on._logs["rewards"]["text_hash_reward"]).reshape(-1, G)
    w = difficulty_weight(r_loc, tau=0.3)
    np.testing.assert_allclose(on.last_weights, w)
    np.testing.assert_allclose(adv_on, np.array(adv_plain) * np.repeat(w, G), rtol=1e-5, atol=1e-6)
    assert on.state.log_history[0]["difficulty/weight_mean"] == pytest.approx(float(w.mean()))


def test_trainer_refuses_ambiguous_loc_reward(tiny_model_dir, synth_pairs) -> None:
    from differad_edge.train.grpo import DifferadGRPOTrainer
    from differad_edge.train.rewards import format_reward

    with pytest.raises(ConfigError, match="exactly one localization reward"):
        _trainer(DifferadGRPOTrainer, tiny_model_dir, synth_pairs, [format_reward], [1.0])
    funcs, weights = make_reward_funcs("iou")
    with pytest.raises(ConfigError, match="not among the reward functions"):
        _trainer(DifferadGRPOTrainer, tiny_model_dir, synth_pairs, funcs, weights, loc_reward="nope")
