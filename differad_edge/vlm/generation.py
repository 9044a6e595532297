"""Greedy decoding with the stage split we report: prefill (first token) vs decode (the rest).

Two paths. ``greedy_generate`` (grammar off): transformers' ``generate``; a stopping criterion that
only records when it is first called (right after the prefill picked the first token) splits the
time. ``grammar_generate`` (grammar on, ``differad_edge.grammar``): our own loop over the model's
forward, because jump-forward (the grammar's forced tokens appended and run through the model in
one forward pass together with the model's choice) is not something ``generate`` can do; it keeps
the positions and KV cache exactly as ``generate`` does, so a valid unconstrained answer comes out
token-identical.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

ANSWER_END = "</answer>"


def additive_mask(visible: Any, dtype: Any) -> Any:
    """A boolean attention mask (True = attend) as the additive float mask every attention kernel takes
    (eager, sdpa, and the ONNX decoder graph): 0 where visible, the dtype's minimum elsewhere."""
    import torch

    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(~visible, torch.finfo(dtype).min)


@dataclass
class Generated:
    """Output of one ``greedy_generate`` call (batch rows in input order)."""

    tokens: list[list[int]]
    texts: list[str]
    scores: list[float]  # geometric mean of the greedy tokens' probabilities, per row
    prefill_ms: float
    decode_ms: float
    #: Decoder forward passes per row, the prefill included (``generate``: one per new token).
    forward_passes: list[int] = field(default_factory=list)
    #: Tokens per row appended by the grammar without a model choice (0 with the grammar off).
    forced: list[int] = field(default_factory=list)

    @classmethod
    def concat(cls, parts: list[Generated]) -> Generated:
        """Rows of several single-row calls as one result (timings summed)."""
        return cls(
            [t for p in parts for t in p.tokens],
            [t for p in parts for t in p.texts],
            [s for p in parts for s in p.scores],
            sum(p.prefill_ms for p in parts),
            sum(p.decode_ms for p in parts),
            [n for p in parts for n in p.forward_passes],
            [n for p in parts for n in p.forced],
        )


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


def greedy_generate(
    model: Any,
    tokenizer: Any,
    inputs: dict[str, Any],
    max_new_tokens: int,
    min_new_tokens: int = 0,
    stop_at_answer: bool = True,
) -> Generated:
    """Greedy decoding, stopping at ``</answer>`` (or EOS, or the token limit).

    ``min_new_tokens`` forces a fixed answer length (benchmarks): EOS and the stop string are ignored
    until it is reached.
    """
    import torch
    from transformers import StoppingCriteriaList

    timer = _first_step_timer_class()(model.device)
    kwargs: dict[str, Any] = dict(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        return_dict_in_generate=True,
        output_scores=True,
        stopping_criteria=StoppingCriteriaList([timer]),
        temperature=None,
        top_p=None,
        top_k=None,
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
    return Generated(
        tokens,
        texts,
        scores,
        (first - t0) * 1000.0,
        (t_end - first) * 1000.0,
        forward_passes=[len(t) for t in tokens],
        forced=[0] * len(tokens),
    )


def grammar_generate(
    model: Any, tokenizer: Any, inputs: dict[str, Any], max_new_tokens: int, grammar: Any, lookahead: bool = False
) -> Generated:
    """Greedy decoding of ONE row under ``grammar`` (a ``differad_edge.grammar.TokenGrammar``), jump-forward.

    ``inputs`` as for ``greedy_generate``: the full prompt's ``input_ids`` / ``mm_token_type_ids`` /
    ``image_grid_thw``, the images as ``pixel_values`` or ``mm_encoder_outputs``, and optionally a
    ``past_key_values`` already holding a prompt prefix (the reference prefix cache), dynamic or static.
    Positions are those ``generate`` uses: M-RoPE ids of the prompt, then text positions + rope delta.
    ``lookahead`` runs the next decision's candidates in the same pass (``differad_edge.lookahead``,
    a tree attention mask); it needs a dynamic cache (a static cache's mask spans its fixed length,
    which the tree's is not), so the engine turns it off with ``kv_cache="static"``.
    """
    import torch
    from transformers import DynamicCache, StaticCache

    from ..grammar import constrained_decode
    from ..lookahead import TreeCache

    ids = inputs["input_ids"]
    if ids.shape[0] != 1:
        raise ValueError(f"grammar_generate decodes one row at a time, got {ids.shape[0]} rows")
    device = ids.device
    cache = inputs.get("past_key_values")
    cache = cache if cache is not None else DynamicCache(config=model.config)
    past = int(cache.get_seq_length())  # a static cache returns its live counter tensor: copy it
    length = ids.shape[1]
    mm = inputs["mm_token_type_ids"]
    images = {k: inputs[k] for k in ("pixel_values", "mm_encoder_outputs") if inputs.get(k) is not None}
    on_device: dict[int, tuple[Any, Any]] = {}
    seen = [past]  # tokens in the KV cache
    if lookahead and isinstance(cache, StaticCache):
        raise ValueError("lookahead needs a dynamic KV cache (a static cache has no room for its branches)")
    tree: list[TreeCache] = []  # made after the prefill

    def rope_positions(idx: Any, deltas: Any) -> Any:
        """Text position ids ``idx`` as the 4-row ids generate passes: text row, then M-RoPE rows + delta."""
        idx = idx.view(1, 1, -1)
        return torch.cat([idx, (idx + deltas.view(1, -1, 1)).expand(3, -1, -1)], dim=0)

    def text_positions(start: int, n: int, deltas: Any) -> Any:
        return rope_positions(torch.arange(start, start + n, device=device), deltas)

    def forward(new_ids: Any, positions: Any, **extra: Any) -> Any:
        n = new_ids.shape[1]
        out = model(
            input_ids=new_ids,
            attention_mask=torch.ones((1, seen[0] + n), dtype=torch.long, device=device),
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **extra,
        )
        seen[0] += n
        return out.logits[0, -1]

    def as_tensor(tokens: list[int]) -> Any:
        return torch.tensor([tokens], dtype=torch.long, device=device)

    with torch.inference_mode():
        model.model.rope_deltas = None
        pos3, deltas = model.model.get_rope_index(
            ids, mm_token_type_ids=mm, image_grid_thw=inputs["image_grid_thw"], attention_mask=torch.ones_like(ids)
        )
        deltas = deltas.to(device)

        def prefill(forced: list[int]) -> Any:
            prompt_pos = torch.cat([torch.arange(past, length, device=device).view(1, 1, -1), pos3[:, :, past:]], 0)
            positions = torch.cat([prompt_pos, text_positions(length, len(forced), deltas)], dim=2)
            new_ids = torch.cat([ids[:, past:], as_tensor(forced)[:, : len(forced)]], dim=1)
            types = torch.cat([mm[:, past:], torch.zeros((1, len(forced)), dtype=mm.dtype, device=device)], dim=1)
            return forward(
                new_ids, positions, mm_token_type_ids=types, image_grid_thw=inputs["image_grid_thw"], **images
            )

        def step(chain: list[int], branches: list[list[int]], keep: int | None) -> list[Any]:
            if not tree:
                tree.append(TreeCache(seen[0], seen[0]))
            b = tree[0].batch(chain, branches, keep)
            if b.causal:  # plain causal mask: exactly the call generate would make
                return [forward(as_tensor(b.tokens), text_positions(int(b.positions[0]), len(b.tokens), deltas))]
            positions = rope_positions(torch.as_tensor(b.positions, device=device), deltas)
            visible = torch.as_tensor(b.visible, device=device)[None, None]
            out = model(
                input_ids=as_tensor(b.tokens),
                attention_mask=additive_mask(visible, model.dtype),
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=torch.as_tensor(b.rows, device=device),
            )
            seen[0] += len(b.tokens)
            return list(out.logits[0])

        def pick(logits: Any, allowed: Any) -> tuple[int, float]:
            entry = on_device.get(id(allowed))
            if entry is None or entry[0] is not allowed:
                entry = on_device[id(allowed)] = (allowed, torch.as_tensor(allowed, device=logits.device))
            row = logits.float()
            tok = int(allowed[int(torch.argmax(row.index_select(0, entry[1])))])
            return tok, float(row[tok] - torch.logsumexp(row, 0))

        t0 = time.perf_counter()
        first: list[float] = []

        def timed_prefill(forced: list[int]) -> Any:
            logits = prefill(forced)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            first.append(time.perf_counter())
            return logits

        dec = constrained_decode(grammar, timed_prefill, step, pick, max_new_tokens, lookahead)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t_end = time.perf_counter()
        model.model.rope_deltas = None
    t_first = first[0] if first else t_end
    text = tokenizer.decode(dec.tokens, skip_special_tokens=True)
    return Generated(
        [dec.tokens],
        [text],
        [dec.score],
        (t_first - t0) * 1000.0,
        (t_end - t_first) * 1000.0,
        forward_passes=[dec.forward_passes],
        forced=[len(dec.tokens) - sum(dec.chosen)],
    )


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
