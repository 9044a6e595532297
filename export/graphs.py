"""Qwen3-VL -> two ONNX graphs (vision encoder, decoder with KV cache) via ``torch.onnx.export``.

Why two graphs and these inputs: the vision tower's grid-dependent tensors (position-embedding
interpolation, rotary ids, ``cu_seqlens``) come from data-dependent ops, so the host computes them
(``differad_edge.onnxrt.preprocess``) and the graph stays dynamic in the number of patches; the
vision attention's per-image split (``.tolist()``, ``searchsorted``) is rewritten as one attention
with a block-diagonal mask. The decoder takes ``inputs_embeds`` (image features spliced in by the
host), mrope position ids ``[3, B, S]`` and the deepstack features as a dense input (zeros at text
positions) instead of a boolean-mask scatter, a boolean attention mask ``[B, 1, S, past + S]`` (causal,
or a tree for grammar lookahead, ``differad_edge.lookahead``) and ``logits_rows``: it returns the
logits of those positions only (the last one; with lookahead, each branch's last).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17
VISION_INPUTS = ("pixel_values", "interp_indices", "interp_weights", "rot_pos_ids", "cu_seqlens")


def _vision_attention_blockdiag(
    self: Any, hidden_states: Any, cu_seqlens: Any, position_embeddings: Any = None, **_: Any
) -> Any:
    """Qwen3VLVisionAttention.forward with a block-diagonal mask from ``cu_seqlens`` (traceable)."""
    import torch
    from transformers.models.qwen3_vl import modeling_qwen3_vl as mq

    n = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(n, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = mq.apply_rotary_pos_emb_vision(q, k, cos, sin)
    q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    idx = torch.arange(n, dtype=cu_seqlens.dtype, device=cu_seqlens.device)
    seg = (idx[:, None] >= cu_seqlens[None, 1:]).sum(1)  # image id per patch; ONNX has no searchsorted
    mask = seg[:, None] == seg[None, :]
    o = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling)
    return self.proj(o.squeeze(0).transpose(0, 1).reshape(n, -1).contiguous())


@contextlib.contextmanager
def export_patches(model: Any) -> Iterator[None]:
    """Swap in the traceable vision attention and dense deepstack add; restore them afterwards."""
    lm = model.model.language_model
    blocks = list(model.model.visual.blocks)
    for blk in blocks:
        blk.attn.forward = _vision_attention_blockdiag.__get__(blk.attn)
    lm._deepstack_process = lambda hs, mask, emb: hs + emb  # dense: zeros at text positions
    try:
        yield
    finally:
        for blk in blocks:
            del blk.attn.forward
        del lm._deepstack_process


def _decoder_module(model: Any) -> Any:
    import torch
    from transformers import DynamicCache

    from differad_edge.vlm.generation import additive_mask

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm, self.lm_head = model.model.language_model, model.lm_head
            self.cfg = model.config.text_config

        def forward(
            self,
            inputs_embeds: Any,
            attention_mask: Any,
            position_ids: Any,
            deepstack: Any,
            logits_rows: Any,
            *past: Any,
        ) -> Any:
            cache = DynamicCache(config=self.cfg)
            for i in range(self.cfg.num_hidden_layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            # the host's mask (batch, 1, new, past + new): True = attend. Causal for a plain call, a
            # tree for lookahead (``differad_edge.lookahead``)
            out = self.lm(
                inputs_embeds=inputs_embeds,
                attention_mask=additive_mask(attention_mask, inputs_embeds.dtype),
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
                deepstack_visual_embeds=list(deepstack.unbind(0)),
                visual_pos_masks=None,
            )
            logits = self.lm_head(out.last_hidden_state.index_select(1, logits_rows))
            presents = []
            for layer in out.past_key_values.layers:
                presents += [layer.keys, layer.values]
            return (logits, *presents)

    return Decoder().eval()


def _vision_module(model: Any) -> Any:
    import torch

    class Vision(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = model.model.visual

        def forward(
            self, pixel_values: Any, interp_indices: Any, interp_weights: Any, rot_pos_ids: Any, cu_seqlens: Any
        ) -> Any:
            o = self.visual(
                pixel_values,
                grid_thw=cu_seqlens,
                return_dict=True,
                interp_indices=interp_indices,
                interp_weights=interp_weights,
                position_ids=rot_pos_ids,
                cu_seqlens=cu_seqlens,
            )
            return o.pooler_output, torch.stack(o.deepstack_features, 0)

    return Vision().eval()


def text_dims(model: Any) -> dict[str, int]:
    cfg = model.config.text_config
    return {
        "hidden_size": int(cfg.hidden_size),
        "num_layers": int(cfg.num_hidden_layers),
        "num_kv_heads": int(cfg.num_key_value_heads),
        "head_dim": int(cfg.head_dim),
        "num_deepstack": len(model.config.vision_config.deepstack_visual_indexes),
        "vocab_size": int(cfg.vocab_size),
    }


def _export(module: Any, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings on shape-constant branches (checked by parity tests)
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
        )


def export_vision(model: Any, path: Path, host_inputs: dict[str, np.ndarray], pixel_values: np.ndarray) -> None:
    """Vision encoder graph, dynamic in the number of patches (example: one real image)."""
    import torch

    args = tuple(
        torch.from_numpy(np.ascontiguousarray(a)) for a in (pixel_values, *(host_inputs[k] for k in VISION_INPUTS[1:]))
    )
    axes = {k: {0: "patches"} for k in VISION_INPUTS[:4]}
    axes.update(cu_seqlens={0: "segments"}, image_embeds={0: "tokens"}, deepstack={1: "tokens"})
    with export_patches(model):
        _export(_vision_module(model), args, path, list(VISION_INPUTS), ["image_embeds", "deepstack"], axes)


def export_decoder(model: Any, path: Path) -> None:
    """Decoder graph with KV cache; batch 2 / past 7 in the example so no size is specialised away."""
    import torch

    d = text_dims(model)
    n_layers, kvh, hd, h = d["num_layers"], d["num_kv_heads"], d["head_dim"], d["hidden_size"]
    b, s, p = 2, 5, 7
    gen = torch.Generator().manual_seed(0)
    causal = torch.ones(s, p + s, dtype=torch.bool).tril(p)
    args = (
        torch.randn(b, s, h, generator=gen),
        causal.expand(b, 1, s, p + s).contiguous(),
        torch.arange(p, p + s).view(1, 1, s).expand(3, b, s).contiguous(),
        torch.zeros(d["num_deepstack"], b, s, h),
        torch.tensor([1, s - 1]),
        *[torch.randn(b, kvh, p, hd, generator=gen) for _ in range(2 * n_layers)],
    )
    past = [f"past_{kv}_{i}" for i in range(n_layers) for kv in ("key", "value")]
    present = [f"present_{kv}_{i}" for i in range(n_layers) for kv in ("key", "value")]
    axes: dict[str, dict[int, str]] = {
        "inputs_embeds": {0: "batch", 1: "seq"},
        "attention_mask": {0: "batch", 2: "seq", 3: "total"},
        "position_ids": {1: "batch", 2: "seq"},
        "deepstack": {1: "batch", 2: "seq"},
        "logits_rows": {0: "rows"},
        "logits": {0: "batch", 1: "rows"},
        **{n: {0: "batch", 2: "past"} for n in past},
        **{n: {0: "batch", 2: "total"} for n in present},
    }
    with export_patches(model):
        _export(
            _decoder_module(model),
            args,
            path,
            ["inputs_embeds", "attention_mask", "position_ids", "deepstack", "logits_rows", *past],
            ["logits", *present],
            axes,
        )


def embedding_table(model: Any, dtype: Any = np.float32) -> np.ndarray:
    """The input embedding table (the host looks tokens up; the decoder graph takes embeddings)."""
    w = model.model.language_model.embed_tokens.weight.detach().float().cpu().numpy()
    return w.astype(dtype)
