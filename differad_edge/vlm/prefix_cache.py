"""Reference prefix cache: the reference image's work is done once, not once per camera frame.

The prompt puts the reference image first, so every prompt shares the tokens up to the reference's
``<|vision_end|>``. Their KV cache (which already holds the reference's vision features, DeepStack
injections included) is computed once per reference and copied for each target; the target then
runs only its own vision encoding and the short suffix. In fp32 the greedy tokens are identical to
the uncached run (see ``tests/vlm``).

The key covers everything the prefix depends on: the reference content hash, the prompt template
(id and full text), the size policy and the model identity (checkpoint, dtype, quantization). Any
change gives a different key and a fresh prefix; nothing stale is ever reused.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..errors import EngineError
from ..fileio import sha256_bytes
from ..lru import LRU

VISION_END = "<|vision_end|>"


@dataclass(frozen=True)
class PrefixKey:
    """What a reference prefix depends on; equal keys mean an interchangeable prefix."""

    reference: str
    template: str
    size_policy: str
    model: str

    def __str__(self) -> str:
        return f"ref={self.reference[:12]} tpl={self.template} size={self.size_policy} model={self.model}"


def template_key(template_id: str, prompt_text: str) -> str:
    """Template id plus a hash of the rendered text (an edited template with the same id still differs)."""
    return f"{template_id}#{sha256_bytes(prompt_text.encode('utf-8'))[:12]}"


def split_prompt(text: str) -> tuple[str, str]:
    """Split a rendered two-image prompt after the first image (the reference)."""
    cut = text.find(VISION_END)
    if cut < 0 or text.find(VISION_END, cut + 1) < 0:
        raise EngineError(
            "the rendered prompt does not hold two images; the template must put the reference and "
            "the target image in the user message (prompts.PromptTemplate.messages)"
        )
    cut += len(VISION_END)
    return text[:cut], text[cut:]


@dataclass
class ReferencePrefix:
    """The cached prompt prefix of one reference: token ids, image grid and KV cache."""

    key: PrefixKey
    input_ids: Any  # LongTensor [1, P]
    mm_token_type_ids: Any  # IntTensor [1, P]
    image_grid_thw: Any  # LongTensor [1, 3]
    cache: Any  # transformers DynamicCache over the P prefix tokens
    config: Any = None  # the model config (shapes of a static cache)
    build_ms: dict[str, float] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])

    def cache_for(self, batch: int = 1, static_len: int | None = None) -> Any:
        """A private KV cache for ``batch`` sequences, starting from the prefix.

        ``DynamicLayer.update`` concatenates into new tensors and never writes into the old ones, so
        new layer objects sharing the prefix tensors are enough: no copy of the KV data per frame
        (the parity tests check the prefix is untouched). Other layer types get a deep copy.
        ``static_len``: a ``StaticCache`` of that many positions holding a copy of the prefix, for
        decoding with fixed shapes (see :func:`static_cache`).
        """
        from transformers.cache_utils import DynamicLayer

        if static_len is not None:
            return static_cache(self.config, batch, static_len, self.cache)
        if all(type(layer) is DynamicLayer for layer in self.cache.layers) and not self.cache.offloading:
            cache = copy.copy(self.cache)
            cache.layers = [copy.copy(layer) for layer in self.cache.layers]
        else:
            cache = copy.deepcopy(self.cache)
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        return cache


def static_cache_length(needed: int, step: int = 256) -> int:
    """``needed`` positions rounded up to ``step``: frames of a camera share one cache shape, so a
    compiled decoder is traced once, not once per prompt length."""
    return -(-needed // step) * step


def static_cache(config: Any, batch: int, length: int, prefix: Any = None) -> Any:
    """A ``StaticCache`` of ``length`` positions for ``batch`` rows; with ``prefix`` (a filled
    cache, e.g. a reference prefix), its keys and values are copied into the first positions.

    Why: a static cache keeps every decode step's shapes fixed, which is what lets transformers'
    ``generate`` compile the decoder (``torch.compile`` / CUDA graphs, on CUDA); with a dynamic
    cache each of the answer's tokens pays Python and kernel-launch overhead on a 28-layer model.
    """
    import torch
    from transformers import StaticCache

    cache = StaticCache(config=config, max_cache_len=length)
    for i, layer in enumerate(prefix.layers if prefix is not None else ()):
        keys, values = layer.keys, layer.values
        if keys.shape[2] > length:
            raise EngineError(f"the reference prefix has {keys.shape[2]} positions, the static cache only {length}")
        if batch > 1:
            keys, values = keys.expand(batch, *keys.shape[1:]), values.expand(batch, *values.shape[1:])
        cache.update(keys, values, i, {"cache_position": torch.arange(keys.shape[2], device=keys.device)})
    return cache


def build_prefix(model: Any, inputs: dict[str, Any], key: PrefixKey, timer: Any) -> ReferencePrefix:
    """Run the prompt prefix with the reference image once and keep its KV cache.

    ``inputs`` holds ``input_ids``, ``mm_token_type_ids``, ``pixel_values`` and ``image_grid_thw`` of
    the prefix text with the (already resized) reference, encoded exactly as the per-frame inputs are;
    ``timer`` (an ``engines.StageTimer``) gets the ``vision`` and ``prefill`` stages of this one-off work.
    """
    import torch
    from transformers import DynamicCache

    with torch.inference_mode():
        with timer("vision"):
            features = model.model.get_image_features(
                inputs["pixel_values"], inputs["image_grid_thw"], return_dict=True
            )
        with timer("prefill"):
            model.model.rope_deltas = None
            out = model(
                input_ids=inputs["input_ids"],
                attention_mask=torch.ones_like(inputs["input_ids"]),
                mm_token_type_ids=inputs["mm_token_type_ids"],
                image_grid_thw=inputs["image_grid_thw"],
                mm_encoder_outputs={"image": features},
                past_key_values=DynamicCache(config=model.config),
                use_cache=True,
                logits_to_keep=1,
            )
            model.model.rope_deltas = None  # the next call must recompute positions for its own prompt
    return ReferencePrefix(
        key=key,
        input_ids=inputs["input_ids"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        image_grid_thw=inputs["image_grid_thw"],
        cache=out.past_key_values,
        config=model.config,
        build_ms=dict(timer.ms),
    )


class PrefixCache:
    """A small LRU of reference prefixes (an inspection cell switches between a few products)."""

    def __init__(self, max_entries: int = 4) -> None:
        if max_entries < 1:
            raise EngineError(f"prefix cache needs max_entries >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: LRU[PrefixKey, ReferencePrefix] = LRU(max_entries)
        self.builds = 0
        self.hits = 0

    def get(self, key: PrefixKey) -> ReferencePrefix | None:
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
        return entry

    def put(self, prefix: ReferencePrefix) -> None:
        self.builds += 1
        self._entries.put(prefix.key, prefix)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
