"""Resampling on the real TRL trainer with the tiny model: solved groups are never regenerated,
flatness is judged on R_loc (or the total), TRL's generation metrics and token counts are not
inflated by regeneration, and steps without any signal are reported."""

from __future__ import annotations

import logging

import pytest
from differad_edge.train.rewards import make_format_reward, make_reward_funcs
from grpo_helpers import MAX_COMPLETION, ROWS, G, tiny_grpo_trainer

_trainer = tiny_grpo_trainer


def _constant_loc(value: float):
    def constant_loc(completions, **kwargs):
        return [value] * len(completions)

    constant_loc.max_value = 1.0  # what a perfect answer would get
    return constant_loc


@pytest.mark.slow
@pytest.mark.parametrize(("value", "regenerated"), [(1.0, False), (0.5, True)])
def test_solved_group_is_never_regenerated(tiny_model_dir, synth_pairs, value, regenerated) -> None:
    # R_loc is flat in both cases; at its maximum the group is solved (right), at 0.5 it is stuck
    funcs = [make_format_reward(True), _constant_loc(value)]
    tr = _trainer(tiny_model_dir, synth_pairs, funcs, [1.0, 1.0], loc_reward="constant_loc", max_resample_rounds=2)
    tr.train()
    n_groups = ROWS // G
    totals = tr.resample_totals
    assert totals["groups"] == n_groups
    assert totals["solved_groups"] == (0 if regenerated else n_groups)
    assert totals["regenerations"] == (2 * n_groups if regenerated else 0)
    assert tr.state.log_history[0]["resample/solved_share"] == (0.0 if regenerated else 1.0)


class _MetricCounter:
    """Records, at the end of each step (before TRL logs and clears them), how many values each
    generation metric got and the token count."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        outer = self

        class CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                m = outer.trainer._metrics["train"]
                outer.counts = {k: len(v) for k, v in m.items() if k.startswith("completions/")}
                outer.tokens = state.num_input_tokens_seen

        self.callback = CB()
        self.trainer = None
        self.counts: dict[str, int] = {}
        self.tokens = 0


@pytest.mark.slow
def test_regeneration_does_not_inflate_metrics_or_token_counts(tiny_model_dir, synth_pairs) -> None:
    runs = {}
    for resample in (True, False):
        funcs, weights = make_reward_funcs("dclr")  # random model: never a box, every group flat
        counter = _MetricCounter()
        tr = _trainer(
            tiny_model_dir,
            synth_pairs,
            funcs,
            weights,
            callbacks=[counter.callback],
            resample=resample,
            max_resample_rounds=2,
        )
        counter.trainer = tr
        tr.train()
        runs[resample] = (tr, counter)
    tr, counter = runs[True]
    assert tr.resample_totals["regenerations"] == 4  # 2 groups x 2 rounds were generated again
    assert counter.counts
    assert set(counter.counts.values()) == {1}
    plain = runs[False][1]
    assert plain.counts == counter.counts
    # same prompts; only the completion lengths may differ (at most MAX_COMPLETION tokens per row)
    assert abs(counter.tokens - plain.tokens) <= ROWS * MAX_COMPLETION
    assert plain.tokens > 3 * ROWS * MAX_COMPLETION  # the prompts dominate: inflation could not hide
    assert tr.state.log_history[0]["num_tokens"] == counter.tokens


@pytest.mark.slow
def test_flatness_on_loc_and_zero_advantage_warning(tiny_model_dir, synth_pairs, caplog) -> None:
    import zlib

    def text_hash_reward(completions, **kwargs):
        return [(zlib.crc32(c[-1]["content"].encode()) % 1000) / 1000 for c in completions]

    funcs, weights = make_reward_funcs("dclr")
    # the total varies (hash), R_loc is flat 0: judged on R_loc (the authors' rule) the groups are regenerated
    tr = _trainer(tiny_model_dir, synth_pairs, funcs + [text_hash_reward], weights + [1.0], max_resample_rounds=1)
    tr.train()
    assert tr.resample_totals["regenerations"] == ROWS // G

    funcs, weights = make_reward_funcs("dclr")
    with caplog.at_level(logging.WARNING, logger="differad_edge.train.grpo"):
        flat = _trainer(tiny_model_dir, synth_pairs, funcs, weights, resample=False, zero_advantage_warn_steps=1)
        flat.train()
    assert flat.zero_advantage_streak == 1
    assert any("consecutive steps with zero advantage" in r.getMessage() for r in caplog.records)
