"""Offline model factory: random-weight Qwen3-VL checkpoints of the real architecture, no hub.

Tests, demos and benchmarks need a model folder that loads through exactly the loader users use for
real checkpoints (safetensors, tokenizer, chat template, image processor, prompt file), without a
download. Sizes:

- ``tiny``: 2+2 layers of width 64 (bitsandbytes needs widths >= 64), a few MB, seconds to build;
  ``initializer_range=0.4`` so the random model emits varied tokens instead of one repeated token.
- ``small``: ~70M parameters whose compute split (vision tower vs text decoder vs LM head) resembles
  the 2B model's, for CPU latency benchmarks of the reference prefix cache.
- ``2b``: the Qwen3-VL-2B-Instruct shape (bf16 on disk, ~4.3 GB) for GPU benchmarks.

The tokenizer is a byte-level BPE trained here on the prompt texts, carrying the Qwen special tokens
(ids differ from the real ones: they follow the small vocabulary). It splits the answer as Qwen's
tokenizer does where that changes decode-step counts (``QWEN_ANSWER_SPLIT``): one token per digit,
``<answer>`` as ``<`` ``answer`` ``>`` and ``</answer>`` as ``</`` ``answer`` ``>``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, missing_extra
from ..fileio import atomic_write_json
from ..prompts import (
    ANSWER_SPEC,
    DEFAULT_INFERENCE_TEMPLATE,
    INSTRUCTIONS,
    PROMPT_FILE,
    SYSTEM_INSTRUCTION,
    get_template,
)
from .model_card import MODEL_CARD

Size = Literal["tiny", "small", "2b"]

#: Qwen2/3 special tokens in the real order (the real ids start at 151643).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
#: Added but not special in real Qwen3 (they survive ``skip_special_tokens``).
NON_SPECIAL_ADDED = ("<tool_call>", "</tool_call>", "<think>", "</think>")
#: How Qwen2/2.5/3 tokenize the answer tags (no added tokens: ``<answer>`` is plain text to them).
#: Evidence (public code, Qwen2.5 token ids): ``encode("<answer>") == [27, 9217, 29]`` (``<``,
#: ``answer``, ``>``), ``encode("</answer>") == [522, 9217, 29]`` (``</``, ...), GRPO completion logs
#: ``... 522, 26865, 397, 27, 9217, 29, 220, 23, 15 ...`` (``</``, ``think``, ``>\n``, ``<``, ``answer``,
#: ``>``, `` ``, ``8``, ``0``: digits 15..24, one per token). No token of Qwen's starts ``<answer``, so
#: the factory BPE drops every merge that would join ``<`` to a letter. Punctuation runs the pre-tokenizer
#: isolates (``>(``, ``),(``, ``)</``) stay merged as trained: no evidence either way, and one token
#: each is the choice that cannot overstate Qwen's token count.
QWEN_ANSWER_SPLIT = {"<answer>": ["<", "answer", ">"], "</answer>": ["</", "answer", ">"]}
_TAG_JOIN = re.compile(r"<[A-Za-z]")

CHAT_TEMPLATE_FILE = "qwen3_vl_chat_template.jinja"  # package data, copied from trl/chat_templates/qwen3_vl.jinja


@dataclass(frozen=True)
class ModelSpec:
    """Shape of one factory size (text decoder, vision tower, vocabularies, init scale)."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    head_dim: int
    text_intermediate: int
    mrope_section: tuple[int, int, int]
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int
    deepstack: tuple[int, ...]
    tokenizer_vocab: int
    model_vocab: int
    init_std: float
    save_dtype: str


SPECS: dict[str, ModelSpec] = {
    "tiny": ModelSpec(64, 2, 4, 2, 16, 128, (4, 2, 2), 64, 2, 2, 128, (0, 1), 1024, 1024, 0.4, "float32"),
    # Per layer text:vision params 4:1 and depth 12:16 keep vision/text compute per image near the
    # 2B's (~1.3); LM head / decoder ~0.22 as in the 2B.
    "small": ModelSpec(
        512, 12, 8, 4, 64, 1536, (12, 10, 10), 256, 16, 4, 1024, (3, 7, 11), 4096, 16384, 0.2, "float32"
    ),
    # Qwen/Qwen3-VL-2B-Instruct config.json values.
    "2b": ModelSpec(
        2048, 28, 16, 8, 128, 6144, (24, 20, 20), 1024, 24, 16, 4096, (5, 11, 17), 4096, 151936, 0.02, "bfloat16"
    ),
}


def _spec(size: str) -> ModelSpec:
    try:
        return SPECS[size]
    except KeyError:
        raise ConfigError(f"unknown model size {size!r}; expected one of {', '.join(SPECS)}") from None


def _corpus() -> Iterator[str]:
    """Text the BPE learns from: our prompts, the answer syntax and numbers on the 0-1000 grid."""
    yield SYSTEM_INSTRUCTION
    yield ANSWER_SPEC
    yield from INSTRUCTIONS
    yield "First reason inside <think></think>, then give only the box inside <answer></answer>."
    yield "The target differs from the reference: a scratch, dent, crack, stain or missing part. No defect."
    for i in range(0, 1001, 7):
        yield f"<answer>({i},{(i * 37) % 1001}),({min(i + 40, 1000)},{(i * 53) % 1001})</answer>"
    yield " ".join(str(i) for i in range(1001))


def _without_tag_merges(
    vocab: dict[str, int], merges: list[tuple[str, str]], size: int
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Drop the merges joining ``<`` to a letter (and those built on them), keep ``size`` tokens, ids dense."""
    dropped: set[str] = set()
    kept: list[tuple[str, str]] = []
    for a, b in merges:
        if a in dropped or b in dropped or _TAG_JOIN.search(a + b):
            dropped.add(a + b)
        else:
            kept.append((a, b))
    order = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in dropped][:size]
    keep = set(order)
    return {t: i for i, t in enumerate(order)}, [(a, b) for a, b in kept if a + b in keep]


def build_tokenizer(vocab_size: int = 1024) -> Any:
    """A byte-level BPE trained offline, wrapped as ``Qwen2Tokenizer`` with the Qwen special tokens.

    Trained a little larger than asked, then the merges Qwen's vocabulary lacks (``<`` + letter) are
    dropped and the vocabulary is cut to size (a merge only uses earlier tokens, so the cut is safe).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(
        models.BPE(
            unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False
        )
    )
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    n_added = len(SPECIAL_TOKENS) + len(NON_SPECIAL_ADDED)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_added + 64,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [(m[0], m[1]) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    vocab, merges = _without_tag_merges(model["vocab"], merges, vocab_size - n_added)
    # the annotations say str merges and unk_token; tuples and None are what it takes
    options: dict[str, Any] = dict(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    tok = Qwen2Tokenizer(**options)
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tok.add_tokens(list(NON_SPECIAL_ADDED), special_tokens=False)
    tok.eos_token = "<|im_end|>"  # as in the Qwen3-VL-*-Instruct tokenizer_config
    return tok


def chat_template_text() -> str:
    """The Qwen3-VL chat template shipped as package data (so the core never imports trl)."""
    return resources.files("differad_edge.vlm").joinpath(CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")


def _token_ids(tokenizer: Any) -> dict[str, int]:
    names = SPECIAL_TOKENS + NON_SPECIAL_ADDED
    return {t: int(tokenizer.convert_tokens_to_ids(t)) for t in names}


def model_config(size: str, token_ids: dict[str, int] | None = None) -> Any:
    """The ``Qwen3VLConfig`` of a factory size. Without ``token_ids`` placeholder ids are used (for shapes only)."""
    from transformers import Qwen3VLConfig

    s = _spec(size)
    if token_ids is None:
        base = s.tokenizer_vocab - len(SPECIAL_TOKENS) - len(NON_SPECIAL_ADDED)
        token_ids = {t: base + i for i, t in enumerate(SPECIAL_TOKENS + NON_SPECIAL_ADDED)}
    pad, eos = token_ids["<|endoftext|>"], token_ids["<|im_end|>"]
    return Qwen3VLConfig(  # type: ignore[call-arg]  # initializer_range is a PretrainedConfig keyword
        text_config=dict(
            vocab_size=s.model_vocab,
            hidden_size=s.text_hidden,
            intermediate_size=s.text_intermediate,
            num_hidden_layers=s.text_layers,
            num_attention_heads=s.text_heads,
            num_key_value_heads=s.text_kv_heads,
            head_dim=s.head_dim,
            max_position_embeddings=262144,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": list(s.mrope_section),
                "mrope_interleaved": True,
            },
            tie_word_embeddings=True,
            pad_token_id=pad,
            eos_token_id=eos,
            bos_token_id=pad,
            initializer_range=s.init_std,
        ),
        vision_config=dict(
            depth=s.vision_layers,
            hidden_size=s.vision_hidden,
            intermediate_size=s.vision_intermediate,
            num_heads=s.vision_heads,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=s.text_hidden,
            num_position_embeddings=2304,
            deepstack_visual_indexes=list(s.deepstack),
            initializer_range=s.init_std,
        ),
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=True,
        initializer_range=s.init_std,
    )


def param_count(size: str) -> int:
    """Parameters of a factory size, counted on the meta device (no memory is allocated)."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(model_config(size))
    return sum(p.numel() for p in model.parameters())


def make_model(
    out_dir: str | os.PathLike,
    size: Size = "tiny",
    seed: int = 0,
    template_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a random-weight Qwen3-VL checkpoint folder and return its path.

    The folder holds ``config.json``, ``model.safetensors``, tokenizer files, the chat template, an
    image processor config that needs no torchvision, and ``differad_prompt.json`` (the prompt
    template, default ``prompts.DEFAULT_INFERENCE_TEMPLATE``). It is built next to ``out_dir`` and
    moved in place at the end, so a failure never leaves a half-written model.
    """
    spec = _spec(size)
    template = get_template(template_id or DEFAULT_INFERENCE_TEMPLATE)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"model folder {out} exists and is not empty; choose a new folder or pass overwrite=True")
    try:
        import torch
        from transformers import GenerationConfig, Qwen3VLForConditionalGeneration
    except ImportError as e:
        raise missing_extra(e.name or "transformers", "vlm") from e
    from .processor import image_only_processor_class, pil_image_processor_class

    tok = build_tokenizer(spec.tokenizer_vocab)
    ids = _token_ids(tok)
    image_processor = pil_image_processor_class()(
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        size={"shortest_edge": 65536, "longest_edge": 16777216},  # Qwen3-VL defaults
    )
    processor = image_only_processor_class()(
        image_processor=image_processor, tokenizer=tok, chat_template=chat_template_text()
    )
    dtype = getattr(torch, spec.save_dtype)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration._from_config(model_config(size, ids), dtype=dtype).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        do_sample=False,
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        mark_processor_class(tmp)
        atomic_write_json(tmp / PROMPT_FILE, template.to_dict())
        atomic_write_json(tmp / MODEL_CARD, {"factory_size": size, "seed": seed, "random_weights": True})
        if out.is_dir():
            shutil.rmtree(out) if overwrite else out.rmdir()
        elif out.exists():
            out.unlink()  # only reachable with overwrite=True
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def mark_processor_class(folder: str | os.PathLike) -> None:
    """Make a saved processor's configs name the standard class, as in a real Qwen3-VL checkpoint.

    Our image-only subclass would otherwise record its own name, which other tools cannot load.
    """
    from .processor import PROCESSOR_CLASS_NAME

    for name in ("processor_config.json", "tokenizer_config.json"):
        path = Path(folder) / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            data["processor_class"] = PROCESSOR_CLASS_NAME
            atomic_write_json(path, data)
