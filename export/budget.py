"""Memory estimate of a bundle at inference: weights + KV cache at the maximum sequence + activations.

Estimated from the model config before anything heavy runs (so an over-budget export is refused in
seconds), then recomputed with the real file sizes for the manifest. Deliberately conservative:
eager attention scores are counted as materialised (``heads x S x S``), as on a CPU/ORT path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from differad_edge.errors import BudgetError

GIB = 1024**3
#: Bytes per weight on disk / in memory. int4 = 4 bits + one fp32 scale per block (MatMulNBits).
WEIGHT_BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a Qwen3-VL config the estimate needs."""

    text_params: int
    vision_params: int
    embed_params: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    vision_hidden: int
    vision_heads: int
    vision_intermediate: int
    patch: int = 16
    merge: int = 2

    @classmethod
    def from_model(cls, model: Any) -> ModelShape:
        t, v = model.config.text_config, model.config.vision_config
        vision = sum(p.numel() for p in model.model.visual.parameters())
        embed = model.model.language_model.embed_tokens.weight.numel()
        total = sum(p.numel() for p in model.parameters())  # tied lm_head counted once
        return cls(
            text_params=int(total - vision),
            vision_params=int(vision),
            embed_params=int(embed),
            hidden=t.hidden_size,
            layers=t.num_hidden_layers,
            heads=t.num_attention_heads,
            kv_heads=t.num_key_value_heads,
            head_dim=t.head_dim,
            intermediate=t.intermediate_size,
            vocab=t.vocab_size,
            vision_hidden=v.hidden_size,
            vision_heads=v.num_heads,
            vision_intermediate=v.intermediate_size,
            patch=v.patch_size,
            merge=v.spatial_merge_size,
        )


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per component and the sequence length the KV cache was sized for."""

    weights_bytes: int
    kv_cache_bytes: int
    activations_bytes: int
    max_seq_len: int
    image_tokens: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.activations_bytes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_bytes"] = self.total_bytes
        d["total_gib"] = round(self.total_bytes / GIB, 4)
        return d

    def describe(self) -> str:
        f = lambda b: f"{b / GIB:.3f} GiB"  # noqa: E731
        return (
            f"memory estimate: weights {f(self.weights_bytes)} + KV cache {f(self.kv_cache_bytes)} "
            f"(max sequence {self.max_seq_len} tokens) + activations {f(self.activations_bytes)} "
            f"= {f(self.total_bytes)}"
        )


def estimate(
    shape: ModelShape,
    quant: str,
    max_image_pixels: int,
    prompt_tokens: int,
    max_new_tokens: int,
    block_size: int = 32,
    weights_bytes: int | None = None,
    kv_bytes: int = 4,
    vision_fp16: bool = False,
) -> MemoryEstimate:
    """Estimate inference memory for one pair (two images of at most ``max_image_pixels``).

    ``weights_bytes`` overrides the config-based weight size (after export: the real file sizes).
    """
    per = WEIGHT_BYTES[quant] + (4.0 / block_size if quant == "int4" else 0.0)
    if weights_bytes is None:
        # decoder matmuls quantized; embedding table kept fp16 (fp32 for fp32); vision fp32 (fp16 if fp16)
        embed_b = shape.embed_params * (4 if quant == "fp32" else 2)
        vision_b = shape.vision_params * (2 if quant == "fp16" or vision_fp16 else 4)
        weights_bytes = int(shape.text_params * per + embed_b + vision_b)
    patches = max(1, max_image_pixels // (shape.patch * shape.patch))
    image_tokens = patches // (shape.merge * shape.merge)
    seq = prompt_tokens + 2 * image_tokens + max_new_tokens
    kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * seq * kv_bytes
    vision_act = 4 * (shape.vision_heads * patches * patches + 3 * patches * shape.vision_intermediate)
    decoder_act = 4 * (shape.heads * seq * seq + 3 * seq * shape.intermediate + 2 * seq * shape.hidden + shape.vocab)
    return MemoryEstimate(int(weights_bytes), int(kv), int(max(vision_act, decoder_act)), int(seq), int(image_tokens))


def check_budget(est: MemoryEstimate, budget_gb: float) -> None:
    """Refuse (``BudgetError``, exit 2 from the CLI) when the estimate exceeds the budget."""
    if est.total_bytes > budget_gb * GIB:
        raise BudgetError(
            f"{est.describe()} exceeds the budget of {budget_gb:g} GiB; use a smaller quantization "
            "(--int4), a smaller image size policy, fewer --max-new-tokens, or raise --budget-gb"
        )
