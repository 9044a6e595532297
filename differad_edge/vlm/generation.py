"""Greedy decoding with the stage split we report: prefill (first token) vs decode (the rest).

``generate`` runs both in one call; a stopping criterion that only records when it is first called
(right after the prefill forward picked the first token) splits the time without a custom loop.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

ANSWER_END = "</answer>"


@dataclass
class Generated:
    """Output of one ``greedy_generate`` call (batch rows in input order)."""

    tokens: list[list[int]]
    texts: list[str]
    scores: list[float]  # geometric mean of the greedy tokens' probabilities, per row
    prefill_ms: float
    decode_ms: float


@functools.cache
def _first_step_timer_class() -> type:
    import torch
    from transformers import StoppingCriteria

    class FirstStepTimer(StoppingCriteria):
        """Never stops generation; remembers when the first new token exists."""

        def __init__(self, device: Any) -> None:
            self.device = device
            self.first: float | None = None

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if self.first is None:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self.first = time.perf_counter()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return FirstStepTimer


def greedy_generate(model: Any, tokenizer: Any, inputs: dict[str, Any], max_new_tokens: int,
                    min_new_tokens: int = 0, stop_at_answer: bool = True) -> Generated:
    """Greedy decoding, stopping at ``</answer>`` (or EOS, or the token limit).

    ``min_new_tokens`` forces a fixed answer length (benchmarks): EOS and the stop string are ignored
    until it is reached.
    """
    import torch
    from transformers import StoppingCriteriaList

    timer = _first_step_timer_class()(model.device)
    kwargs: dict[str, Any] = dict(
        do_sample=False, max_new_tokens=max_new_tokens, return_dict_in_generate=True, output_scores=True,
        stopping_criteria=StoppingCriteriaList([timer]), temperature=None, top_p=None, top_k=None,
    )
    if min_new_tokens:
        kwargs["min_new_tokens"] = min_new_tokens  # EOS is masked until then; no stop string
    elif stop_at_answer:
        kwargs.update(stop_strings=[ANSWER_END], tokenizer=tokenizer)
    prompt_len = inputs["input_ids"].shape[1]
    with torch.inference_mode():
        model.model.rope_deltas = None
        t0 = time.perf_counter()
        out = model.generate(**inputs, **kwargs)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        t_end = time.perf_counter()
        model.model.rope_deltas = None
    new = out.sequences[:, prompt_len:]
    tokens, texts, scores = [], [], []
    logprobs = torch.stack([torch.log_softmax(s.float(), dim=-1) for s in out.scores], dim=1)  # [B, T, V]
    eos = _eos_ids(model)
    for row, lp in zip(new.tolist(), logprobs, strict=True):
        n = _answer_length(row, eos)
        tokens.append(row[:n])
        texts.append(tokenizer.decode(row[:n], skip_special_tokens=True))
        chosen = lp[torch.arange(n), torch.tensor(row[:n], dtype=torch.long)] if n else lp.new_zeros(1)
        scores.append(float(chosen.mean().exp()))
    first = timer.first if timer.first is not None else t_end
    return Generated(tokens, texts, scores, (first - t0) * 1000.0, (t_end - first) * 1000.0)


def _eos_ids(model: Any) -> set[int]:
    """EOS ids plus the pad id (rows that stopped early are padded with it in a batch)."""
    cfg = model.generation_config
    ids: set[int] = set()
    for value in (cfg.eos_token_id, cfg.pad_token_id):
        if value is not None:
            ids.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return ids


def _answer_length(row: list[int], eos: set[int]) -> int:
    """Tokens up to and including the first EOS (batch rows are padded after they finish)."""
    for i, t in enumerate(row):
        if t in eos:
            return i + 1
    return len(row)
