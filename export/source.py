"""The PyTorch side of an export: the prompt's fixed token segments and greedy answers of the source
model, which the bundle must reproduce (fp32) or agree with (quantized)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from differad_edge.errors import BundleError
from differad_edge.prompts import DEFAULT_INFERENCE_TEMPLATE, PromptTemplate, get_template
from differad_edge.vlm.size_policy import SizePolicy

IMAGE_PAD = "<|image_pad|>"


@dataclass(frozen=True)
class PromptSegments:
    """The rendered chat prompt and its token ids around the two image placeholders."""

    text: str
    segments: tuple[list[int], list[int], list[int]]


def template_of(loaded: Any) -> PromptTemplate:
    """The prompt stored with the model, else the default inference template."""
    return loaded.template or get_template(DEFAULT_INFERENCE_TEMPLATE)


def render_prompt(processor: Any, template: PromptTemplate) -> str:
    from differad_edge.vlm.loader import render_chat

    return render_chat(processor, template.messages())  # a refused template: one ModelLoadError line


def prompt_ids(processor: Any, template: PromptTemplate) -> PromptSegments:
    """Split the rendered prompt at the two ``<|image_pad|>`` placeholders and tokenize each piece."""
    text = render_prompt(processor, template)
    parts = text.split(IMAGE_PAD)
    if len(parts) != 3:
        raise BundleError(f"prompt template {template.id!r} renders {len(parts) - 1} image placeholders; expected 2")
    tok = processor.tokenizer
    segs = tuple(list(tok(p, add_special_tokens=False)["input_ids"]) for p in parts)
    return PromptSegments(text, segs)  # type: ignore[arg-type]


class SourceModel:
    """Greedy decoding with the source checkpoint through transformers (uncached, the ground truth)."""

    def __init__(self, loaded: Any, policy: SizePolicy, max_new_tokens: int, grammar: Any = None) -> None:
        """``grammar``: a ``differad_edge.grammar.GrammarSpec`` to decode under (None: unconstrained)."""
        self.loaded, self.policy, self.max_new_tokens = loaded, policy, max_new_tokens
        self.template = template_of(loaded)
        self.text = render_prompt(loaded.processor, self.template)
        self.grammar = None
        if grammar is not None:
            from differad_edge.grammar import TokenGrammar, TokenVocab

            tok = loaded.tokenizer
            vocab = TokenVocab.from_hf_tokenizer(tok, int(loaded.model.config.text_config.vocab_size))
            self.grammar = TokenGrammar(grammar, vocab, lambda t: tok(t, add_special_tokens=False)["input_ids"])

    def inputs(self, reference: np.ndarray, target: np.ndarray) -> Any:
        images = [self.policy.apply(reference).image, self.policy.apply(target).image]
        return self.loaded.processor(text=[self.text], images=images, return_tensors="pt", do_resize=False)

    def generate(self, reference: np.ndarray, target: np.ndarray) -> tuple[list[int], str]:
        """Greedy (tokens, text): under the grammar, or with the vlm engine's stopping rule (EOS or ``</answer>``)."""
        from differad_edge.vlm.generation import grammar_generate, greedy_generate

        model = self.loaded.model
        inputs = dict(self.inputs(reference, target).to(model.device))
        if self.grammar is not None:
            gen = grammar_generate(model, self.loaded.tokenizer, inputs, self.max_new_tokens, self.grammar)
        else:
            gen = greedy_generate(model, self.loaded.tokenizer, inputs, self.max_new_tokens)
        return gen.tokens[0], gen.texts[0]
