"""Engine ``vlm``: Qwen3-VL compares the reference with each target and answers with a box.

Per target: size policy (OpenCV resize, recorded) -> patches + token ids (``vlm/pixels.py``) ->
target vision features -> greedy decoding continuing from the reference prefix cache ->
``parsing.parse_answer`` -> 0-1000 mapped back to target pixels. With ``reference_cache=False`` the
whole two-image prompt runs every time (the baseline for parity tests and benchmarks).
torch/transformers are imported on construction only. The options are one typed, immutable
``VLMConfig`` (``configuration_vlm.py``); the per-reference state is a ``VLMHandle``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, EngineError
from ..images import load_image
from ..parsing import parse_answer
from ..prompts import DEFAULT_INFERENCE_TEMPLATE, PromptTemplate, get_template
from ..vlm.pixels import PromptIds, patchify
from ..vlm.prefix_cache import (
    PrefixCache,
    PrefixKey,
    ReferencePrefix,
    build_prefix,
    split_prompt,
    static_cache,
    static_cache_length,
    template_key,
)
from ..vlm.size_policy import Resized, SizePolicy
from .base import Defect, Detection, Engine, EngineHandle, Reason, Reference, StageTimer, own_handle
from .configuration import make_config, refuse_fixed_changes
from .configuration_vlm import VLMConfig

ENGINE_NAME = "vlm"
#: Enough for a no-think box answer; thinking needs room for the reasoning.
DEFAULT_MAX_NEW_TOKENS = {False: 64, True: 512}
#: Options that choose how the weights load: fixed once the engine holds a model.
_LOAD_OPTIONS = ("dtype", "device", "quant")


@dataclass
class VLMHandle(EngineHandle):
    """The reference as the vlm engine prepared it: resized under ``size_key`` (the size policy it
    was resized with), its prefix cache entry (None until built) and the time ``prepare`` took."""

    resized: Resized | None = None
    size_key: str | None = None
    prefix: ReferencePrefix | None = None
    prepare_ms: dict[str, float] = field(default_factory=dict)


def detection_from_text(
    text: str | None, resized: Resized, score: float = 0.0, timings_ms: dict[str, float] | None = None
) -> Detection:
    """Turn a raw model answer into a detection in the target's source pixels; never raises.

    Unparsable text is NOT_INSPECTED(invalid_answer) with the raw text and the parser's reason (never
    OK); a zero box ("no anomaly") is OK; a box is one NG defect. ``score`` is the answer's confidence
    (geometric mean of its tokens' probabilities; under the answer grammar, of the tokens the model
    chose: forced tokens carry no information); the image-level anomaly score is that confidence
    for a box and ``1 - confidence`` for the zero box, so that higher always means "more anomalous".
    """
    parsed = parse_answer(text)
    timings = dict(timings_ms or {})
    if not parsed.valid or parsed.box is None:
        return Detection.refuse(
            Reason.INVALID_ANSWER,
            f"model answer holds no valid box: {parsed.reason}",
            engine=ENGINE_NAME,
            text=text,
            timings_ms=timings,
        )
    if parsed.box.is_zero:
        return Detection([], 1.0 - float(score), ENGINE_NAME, text=text, timings_ms=timings)
    box = resized.box_to_source(parsed.box)
    if box.is_degenerate:  # cannot happen for an in-range box; kept as a guard
        return Detection.refuse(
            Reason.INVALID_ANSWER,
            f"box {parsed.box.as_tuple()} vanishes in a {resized.source_size} image",
            engine=ENGINE_NAME,
            text=text,
            timings_ms=timings,
        )
    defect = Defect(box, float(score), box.area)
    return Detection([defect], float(score), ENGINE_NAME, text=text, timings_ms=timings)


class VLMEngine(Engine):
    """Qwen3-VL two-image grounding with an optional reference prefix cache.

    ``model`` is a checkpoint folder or a ``vlm.loader.LoadedModel`` (then ``dtype``/``device``/
    ``quant`` are those it was loaded with). The options are a ``VLMConfig``, or its fields as
    keywords (``VLMEngine(path, max_new_tokens=8)``); ``template_id`` defaults to the template stored
    with the model, else ``prompts.DEFAULT_INFERENCE_TEMPLATE``. ``max_batch`` bounds ``detect_batch``.
    """

    name = ENGINE_NAME
    config_type = VLMConfig

    def __init__(self, model: str | os.PathLike | Any, config: VLMConfig | None = None, **options: Any) -> None:
        from ..vlm.loader import LoadedModel, load_model

        cfg = make_config(VLMConfig, ENGINE_NAME, config, options)  # checked before a model loads
        self.loaded: LoadedModel = (
            model
            if isinstance(model, LoadedModel)
            else load_model(_as_path(model), dtype=cfg.dtype, device=cfg.device, quant=cfg.quant)
        )
        #: Benchmarks force fixed-length answers (min = max new tokens); 0 = stop at ``</answer>``/EOS.
        self.min_new_tokens = 0
        self._grammars: dict[tuple[Any, ...], Any] = {}
        self.prefixes = PrefixCache(cfg.max_cached_references)
        self._ids_cache: dict[str, PromptIds] = {}
        self._prompt: tuple[Any, tuple[str, str, str]] | None = None
        self.config = cfg
        self.prompt_text()  # rendered once here: a tampered chat template fails the load, not an inspection

    # --- the options: one immutable config, replaced whole and re-checked against the model ---
    @property
    def config(self) -> VLMConfig:
        return self._config

    @config.setter
    def config(self, config: VLMConfig) -> None:
        """Checks that need the model: the template (the model's own when ``template_id`` is None)
        takes the paraphrase index, and the size policy's factor fits its patch grid. A change that
        alters the reference prefix changes its cache key, so no cached prefix goes stale."""
        refuse_fixed_changes(
            getattr(self, "_config", None),
            config,
            _LOAD_OPTIONS,
            "choose how the weights load; build a new VLMEngine to change them",
        )
        template = (
            get_template(config.template_id)
            if config.template_id is not None
            else self.loaded.template or get_template(DEFAULT_INFERENCE_TEMPLATE)
        )
        template.user_text(config.paraphrase)  # validates the paraphrase index
        vision = self.model.config.vision_config
        block = int(vision.patch_size * vision.spatial_merge_size)
        if config.size_policy.factor % block:
            raise ConfigError(
                f"size policy factor {config.size_policy.factor} must be a multiple of the model's "
                f"patch_size*spatial_merge_size = {block}"
            )
        if self.prefixes.max_entries != config.max_cached_references:
            self.prefixes = PrefixCache(config.max_cached_references)
        self._template = template
        self._config = config

    def _set(self, **changes: Any) -> None:
        self.config = replace(self.config, **changes)

    # thin wrappers over the config: setting one replaces the config (re-validated), so no order matters
    @property
    def template(self) -> PromptTemplate:
        return self._template

    @template.setter
    def template(self, template: PromptTemplate) -> None:
        own = self.loaded.template is not None and template == self.loaded.template
        self._set(template_id=None if own else template.id)

    @property
    def size_policy(self) -> SizePolicy:
        return self.config.size_policy

    @size_policy.setter
    def size_policy(self, policy: SizePolicy) -> None:
        self._set(size_policy=policy)

    @property
    def paraphrase(self) -> int:
        return self.config.paraphrase

    @paraphrase.setter
    def paraphrase(self, paraphrase: int) -> None:
        self._set(paraphrase=paraphrase)

    @property
    def reference_cache(self) -> bool:
        return self.config.reference_cache

    @reference_cache.setter
    def reference_cache(self, on: bool) -> None:
        self._set(reference_cache=on)

    @property
    def kv_cache(self) -> str:
        """``static``: fixed-shape KV cache, which transformers' generate compiles on CUDA (see
        ``prefix_cache.static_cache``); ``dynamic``: the default growing cache."""
        return self.config.kv_cache

    @kv_cache.setter
    def kv_cache(self, kind: str) -> None:
        self._set(kv_cache=kind)

    @property
    def grammar(self) -> bool:
        """Decode under the answer grammar (``differad_edge.grammar``): every answer is a valid box,
        forced tokens are jump-forwarded. Rows of a batch are then decoded one at a time (own loop)."""
        return self.config.grammar

    @grammar.setter
    def grammar(self, on: bool) -> None:
        self._set(grammar=on)

    @property
    def lookahead(self) -> bool:
        """Under the grammar, run the candidates of the next decision in the same pass
        (``differad_edge.lookahead``): the same tokens in about half the decoder passes. Unset: on a
        GPU only, where a decode pass costs about the same for 1 or 30 tokens. Never with the static
        KV cache: its fixed shape has no room for the branches not taken."""
        on = self.config.lookahead
        return self.kv_cache == "dynamic" and (self.model.device.type == "cuda" if on is None else on)

    @lookahead.setter
    def lookahead(self, on: bool | None) -> None:
        self._set(lookahead=on)

    @property
    def max_batch(self) -> int:
        return self.config.max_batch

    @max_batch.setter
    def max_batch(self, rows: int) -> None:
        self._set(max_batch=rows)

    @property
    def fast_preprocess(self) -> bool:
        """Patchify in torch and reuse per-size token ids (see ``vlm/pixels.py``); False = the HF processor."""
        return self.config.fast_preprocess

    @fast_preprocess.setter
    def fast_preprocess(self, on: bool) -> None:
        self._set(fast_preprocess=on)

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def max_new_tokens(self) -> int:
        return self.config.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[self.template.think]

    @max_new_tokens.setter
    def max_new_tokens(self, tokens: int | None) -> None:
        self._set(max_new_tokens=tokens)

    # --- engine protocol ---
    def prepare(self, reference: Reference) -> VLMHandle:
        handle = VLMHandle(reference)
        self._reference_resized(handle)
        if self.reference_cache:
            timer = StageTimer()
            self._prefix(handle, timer)
            handle.prepare_ms = dict(timer.ms)
        return handle

    def detect(self, handle: EngineHandle, target: np.ndarray) -> Detection:
        return self.detect_batch(handle, [target])[0]

    def detect_batch(self, handle: EngineHandle, targets: Sequence[np.ndarray]) -> list[Detection]:
        """Targets of one model-input size run as one batch (``max_batch`` rows at a time)."""
        t0 = time.perf_counter()
        resized = [self.size_policy.apply(load_image(t)) for t in targets]
        prep_ms = (time.perf_counter() - t0) * 1000.0 / max(len(targets), 1)
        out: list[Detection | None] = [None] * len(resized)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(resized):
            groups.setdefault(r.size, []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), self.max_batch):
                chunk = idx[start : start + self.max_batch]
                for i, det in zip(chunk, self._run(handle, [resized[i] for i in chunk], prep_ms), strict=True):
                    out[i] = det
        return [d for d in out if d is not None]

    def describe(self) -> dict[str, Any]:
        info = self.loaded.info
        return {
            "engine": self.name,
            "model": info.get("path"),
            "model_identity": info.get("identity"),
            "dtype": info.get("dtype"),
            "device": info.get("device"),
            "quant": info.get("quant"),
            "params": info.get("params"),
            "template": self.template.id,
            "size_policy": self.size_policy.key,
            "reference_cache": self.reference_cache,
            "max_new_tokens": self.max_new_tokens,
            "kv_cache": self.kv_cache,
            "grammar": self.grammar_spec().to_dict() if self.grammar else None,
            "lookahead": self.grammar and self.lookahead,
        }

    def close(self) -> None:
        self.prefixes.clear()
        loaded = getattr(self, "loaded", None)
        if loaded is not None and str(loaded.info.get("device", "cpu")).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # --- internals ---
    def prompt_text(self) -> tuple[str, str, str]:
        """The rendered prompt, and its split into reference prefix / rest (cached per template)."""
        settings = (self.template, self.paraphrase)
        if self._prompt is None or self._prompt[0] != settings:
            from ..vlm.loader import render_chat

            full = render_chat(
                self.loaded.processor, self.template.messages(paraphrase=self.paraphrase), self.loaded.info.get("path")
            )
            self._prompt = (settings, (full, *split_prompt(full)))
        return self._prompt[1]

    def prefix_key(self, reference: Reference) -> PrefixKey:
        full = self.prompt_text()[0]
        return PrefixKey(
            reference.key, template_key(self.template.id, full), self.size_policy.key, self.loaded.identity
        )

    def _prefix(self, handle: EngineHandle, timer: StageTimer) -> ReferencePrefix:
        handle = _own(handle)
        key = self.prefix_key(handle.reference)
        current = handle.prefix
        if current is not None and current.key == key:
            return current
        prefix = self.prefixes.get(key)
        if prefix is None:
            build_timer = StageTimer()
            try:
                with build_timer("preprocess"):
                    inputs = self._encode(self.prompt_text()[1], [self._reference_resized(handle)], rows=1)
                prefix = build_prefix(self.model, inputs, key, build_timer)
            except (RuntimeError, ValueError, IndexError) as e:
                raise EngineError(
                    f"building the reference prefix failed ({type(e).__name__}: {e}); check the "
                    "model folder, device memory and the reference image"
                ) from e
            self.prefixes.put(prefix)
            timer.ms["prefix_build"] = sum(build_timer.ms.values())
        handle.prefix = prefix
        return prefix

    def _static_length(self, prompt_tokens: int) -> int:
        return static_cache_length(prompt_tokens + self.max_new_tokens)

    def _reference_resized(self, handle: EngineHandle) -> Resized:
        handle = _own(handle)
        if handle.resized is None or handle.size_key != self.size_policy.key:
            handle.resized = self.size_policy.apply(load_image(handle.reference.image))
            handle.size_key = self.size_policy.key
        return handle.resized

    def _encode(self, text: str, images: list[Resized], rows: int) -> dict[str, Any]:
        """Token ids + patches for ``rows`` copies of ``text``; ``images`` in prompt order across rows.

        Every row must hold images of the same sizes (``detect_batch`` groups targets by size). The
        fast path patchifies in torch and reuses per-size token ids; the slow path is the processor.
        """
        import torch

        device = self.model.device
        if self.fast_preprocess:
            per_row = len(images) // rows
            ids, types = self._prompt_ids(text).get(tuple(img.size for img in images[:per_row]), device)
            pixels, grids = zip(
                *(patchify(img.image, self.loaded.processor.image_processor, device) for img in images), strict=True
            )
            return dict(
                input_ids=ids.expand(rows, -1),
                mm_token_type_ids=types.expand(rows, -1),
                pixel_values=torch.cat(pixels),
                image_grid_thw=torch.cat(grids),
            )
        enc = self.loaded.processor(
            text=[text] * rows, images=[img.image for img in images], return_tensors="pt", do_resize=False
        ).to(device)  # the size policy already resized
        self._check_grid(enc["image_grid_thw"], images)
        return {k: enc[k] for k in ("input_ids", "mm_token_type_ids", "pixel_values", "image_grid_thw")}

    def _prompt_ids(self, text: str) -> PromptIds:
        ids = self._ids_cache.get(text)
        if ids is None:
            ids = self._ids_cache[text] = PromptIds(self.loaded.processor, text)
        return ids

    def grammar_spec(self) -> Any:
        """The answer grammar of the current template and answer budget (``grammar.GrammarSpec``)."""
        from ..grammar import grammar_for

        return grammar_for(self.template, self.max_new_tokens)

    def token_grammar(self) -> Any:
        """The grammar over this model's vocabulary (built once per template kind and budget)."""
        from ..grammar import TokenGrammar, TokenVocab

        spec = self.grammar_spec()
        grammar = self._grammars.get(("grammar", spec))
        if grammar is None:
            vocab = self._grammars.get(("vocab",))
            if vocab is None:
                vocab = self._grammars[("vocab",)] = TokenVocab.from_hf_tokenizer(
                    self.loaded.tokenizer, int(self.model.config.text_config.vocab_size)
                )
            tok = self.loaded.tokenizer
            grammar = self._grammars[("grammar", spec)] = TokenGrammar(
                spec, vocab, lambda text: tok(text, add_special_tokens=False)["input_ids"]
            )
        return grammar

    def generate(self, handle: EngineHandle, targets: Sequence[Resized], timer: StageTimer | None = None) -> Any:
        """Raw greedy generation for targets of one model-input size (``vlm.generation.Generated``).

        The parity tests and the benchmark use this to compare tokens of the cached and uncached paths.
        With the grammar on (and no forced answer length) each row runs the constrained loop.
        """
        from ..vlm.generation import Generated, grammar_generate, greedy_generate

        timer = timer if timer is not None else StageTimer()
        targets = list(targets)
        constrained = self.grammar and not self.min_new_tokens
        try:
            if constrained:
                grammar = self.token_grammar()
                parts = []
                for target in targets:
                    inputs = (
                        self._cached_inputs(handle, [target], timer)
                        if self.reference_cache
                        else self._uncached_inputs(handle, [target], timer)
                    )
                    parts.append(
                        grammar_generate(
                            self.model, self.loaded.tokenizer, inputs, self.max_new_tokens, grammar, self.lookahead
                        )
                    )
                gen = Generated.concat(parts)
            else:
                if self.reference_cache:
                    inputs = self._cached_inputs(handle, targets, timer)
                else:
                    inputs = self._uncached_inputs(handle, targets, timer)
                gen = greedy_generate(
                    self.model, self.loaded.tokenizer, inputs, self.max_new_tokens, min_new_tokens=self.min_new_tokens
                )
        except (RuntimeError, ValueError, IndexError) as e:
            raise EngineError(
                f"VLM inference failed ({type(e).__name__}: {e}); check the model folder, device memory and image sizes"
            ) from e
        timer.ms["prefill"] = timer.ms.get("prefill", 0.0) + gen.prefill_ms
        timer.ms["decode"] = gen.decode_ms
        return gen

    def _run(self, handle: EngineHandle, targets: list[Resized], prep_ms: float) -> list[Detection]:
        timer = StageTimer()
        timer.ms["preprocess"] = prep_ms * len(targets)
        gen = self.generate(handle, targets, timer)
        detections = []
        for i, (resized, text, score) in enumerate(zip(targets, gen.texts, gen.scores, strict=True)):
            t0 = time.perf_counter()
            det = detection_from_text(text, resized, score)
            det.timings_ms = dict(timer.ms, parse=(time.perf_counter() - t0) * 1000.0)
            if self.grammar and not self.min_new_tokens:
                det.notes.append(
                    f"answer grammar: {gen.forward_passes[i]} forward passes, {gen.forced[i]} forced tokens"
                )
            det.timings_ms["total"] = sum(det.timings_ms.values())
            if len(targets) > 1:
                det.timings_ms["batch"] = float(len(targets))
            detections.append(det)
        return detections

    def _encode_images(self, enc: Any, timer: StageTimer) -> Any:
        import torch

        with torch.inference_mode(), timer("vision"):
            return self.model.model.get_image_features(enc["pixel_values"], enc["image_grid_thw"], return_dict=True)

    def _check_grid(self, grid: Any, images: list[Resized]) -> None:
        patch = int(self.model.config.vision_config.patch_size)
        for (_, gh, gw), img in zip(grid.tolist(), images, strict=True):
            w, h = img.size
            if (gw * patch, gh * patch) != (w, h):
                raise EngineError(
                    f"the processor resized a {w}x{h} input to {gw * patch}x{gh * patch}; the size "
                    "policy must own resizing (processor do_resize=False)"
                )

    def _uncached_inputs(self, handle: EngineHandle, targets: list[Resized], timer: StageTimer) -> dict[str, Any]:
        import torch

        ref = self._reference_resized(handle)
        with timer("preprocess"):
            enc = self._encode(self.prompt_text()[0], [img for t in targets for img in (ref, t)], rows=len(targets))
        features = self._encode_images(enc, timer)
        inputs = dict(
            input_ids=enc["input_ids"],
            attention_mask=torch.ones_like(enc["input_ids"]),
            mm_token_type_ids=enc["mm_token_type_ids"],
            image_grid_thw=enc["image_grid_thw"],
            mm_encoder_outputs={"image": features},
        )
        if self.kv_cache == "static":
            inputs["past_key_values"] = static_cache(
                self.model.config, len(targets), self._static_length(enc["input_ids"].shape[1])
            )
        return inputs

    def _cached_inputs(self, handle: EngineHandle, targets: list[Resized], timer: StageTimer) -> dict[str, Any]:
        import torch

        prefix = self._prefix(handle, timer)
        n = len(targets)
        with timer("preprocess"):
            enc = self._encode(self.prompt_text()[2], targets, rows=n)
        features = self._encode_images(enc, timer)
        with timer("preprocess"):
            input_ids = torch.cat([prefix.input_ids.expand(n, -1), enc["input_ids"]], dim=1)
            mm_types = torch.cat(
                [prefix.mm_token_type_ids.expand(n, -1).to(enc["mm_token_type_ids"].dtype), enc["mm_token_type_ids"]],
                dim=1,
            )
            grids = torch.stack([prefix.image_grid_thw[0].expand(n, -1), enc["image_grid_thw"]], dim=1).reshape(-1, 3)
            static_len = self._static_length(input_ids.shape[1]) if self.kv_cache == "static" else None
            cache = prefix.cache_for(n, static_len=static_len)
        return dict(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            mm_token_type_ids=mm_types,
            image_grid_thw=grids,
            mm_encoder_outputs={"image": features},
            past_key_values=cache,
        )


def _own(handle: EngineHandle) -> VLMHandle:
    return own_handle(handle, VLMHandle, "vlm")


def _as_path(model: Any) -> Path:
    if isinstance(model, (str, os.PathLike)):
        return Path(model)
    raise ConfigError(f"model must be a checkpoint folder or a LoadedModel, got {type(model).__name__}")
