"""Pairs JSONL (``differad_edge.dataset``) -> Hugging Face datasets for TRL's GRPO and SFT trainers.

Labels go through the same mapping the engine uses at inference (``coords.to_model_scale`` via
``dataset.pair_box_model_scale``), and prompts come from the same versioned template, so a model
trained here answers in exactly the frame and format the engine parses. Images stay as file paths
(``datasets.Image`` decodes them lazily): a 10k-pair set does not have to fit in memory.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

from differad_edge.boxes import Box
from differad_edge.dataset import Pair, pair_box_model_scale, read_pairs
from differad_edge.errors import DatasetError, DifferadError, missing_extra
from differad_edge.parsing import format_box
from differad_edge.prompts import DEFAULT_TRAIN_TEMPLATE, PromptTemplate, get_template

logger = logging.getLogger(__name__)


def load_pairs(path: str | os.PathLike, limit: int | None = None) -> list[Pair]:
    """Read the pairs, warn about skipped lines, refuse an empty result."""
    pf = read_pairs(path)
    if pf.errors:
        logger.warning("%s: skipped %d bad line(s), first: %s", path, pf.skipped, pf.errors[0])
    pairs = pf.pairs[:limit] if limit else pf.pairs
    if not pairs:
        why = f" ({pf.skipped} bad line(s), first: {pf.errors[0]})" if pf.errors else ""
        raise DatasetError(
            f"no usable pairs in {path}{why}; expected JSONL lines with reference, target, box, category"
        )
    return pairs


def think_text(box: Box, category: str) -> str:
    """Templated reasoning for the SFT cold start (the paper's natural-image descriptions are not public)."""
    if box.is_zero:
        return (
            f"The target {category} matches the reference everywhere apart from lighting and viewpoint, "
            "so there is no anomaly."
        )
    cx, cy = (int(round(v)) for v in box.center)
    return (
        f"Comparing the target {category} with the reference, one region around ({cx},{cy}) differs in a way "
        "lighting or viewpoint cannot explain; that region is the anomaly."
    )


def sft_completion(box: Box, category: str, template: PromptTemplate) -> str:
    """The SFT target: ``<think>...</think><answer>(x1,y1),(x2,y2)</answer>`` (answer only for no-think)."""
    answer = f"<answer>{format_box(box)}</answer>"
    return f"<think>{think_text(box, category)}</think>{answer}" if template.think else answer


def _rows(pairs: list[Pair], template: PromptTemplate, seed: int, paraphrase: bool) -> dict[str, list[Any]]:
    rng = random.Random(seed)
    rows: dict[str, list[Any]] = {"id": [], "prompt": [], "images": [], "solution": [], "category": []}
    for pair in pairs:
        k = template.random_paraphrase(rng) if paraphrase else 0
        try:
            box = pair_box_model_scale(pair)
        except DifferadError as e:
            raise DatasetError(f"pair {pair.id!r}: cannot read target {pair.target} ({e}); fix or drop the line") from e
        rows["id"].append(pair.id)
        rows["prompt"].append(template.messages(paraphrase=k))
        rows["images"].append([str(Path(pair.reference).resolve()), str(Path(pair.target).resolve())])
        rows["solution"].append([int(round(v)) for v in box.as_tuple()])
        rows["category"].append(pair.category)
    return rows


def _to_dataset(rows: dict[str, list[Any]]) -> Any:
    try:
        from datasets import Dataset, Image, List
    except ImportError as e:
        raise missing_extra("datasets", "train") from e
    return Dataset.from_dict(rows).cast_column("images", List(Image()))


def _template(template: str | PromptTemplate) -> PromptTemplate:
    return template if isinstance(template, PromptTemplate) else get_template(template)


def split_pairs(pairs: list[Pair], fraction: float, min_train: int, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out): a seeded shuffle, ``fraction`` held out (at least 2) when ``min_train`` pairs remain."""
    n_eval = max(2, int(round(len(pairs) * fraction))) if fraction > 0 else 0
    if n_eval == 0 or len(pairs) - n_eval < min_train:
        return pairs, []
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def build_grpo_dataset(
    pairs_path: str | os.PathLike | list[Pair],
    template_id: str | PromptTemplate = DEFAULT_TRAIN_TEMPLATE,
    seed: int = 0,
    paraphrase: bool = True,
    limit: int | None = None,
) -> Any:
    """GRPO rows: ``prompt`` (chat messages, reference image first), ``images`` [reference, target],
    ``solution`` (ground-truth box on the 0-1000 scale, zero box = normal), ``id``, ``category``.

    ``paraphrase`` draws the instruction from the template's pool with ``seed`` (the paper's 20 phrasings).
    ``pairs_path`` may also be the pairs themselves (a split of them).
    """
    return _to_dataset(_rows(_pairs(pairs_path, limit), _template(template_id), seed, paraphrase))


def _pairs(pairs: str | os.PathLike | list[Pair], limit: int | None) -> list[Pair]:
    return (
        pairs[:limit]
        if isinstance(pairs, list) and limit
        else pairs
        if isinstance(pairs, list)
        else load_pairs(pairs, limit)
    )


def build_sft_dataset(
    pairs_path: str | os.PathLike | list[Pair],
    template_id: str | PromptTemplate = DEFAULT_TRAIN_TEMPLATE,
    seed: int = 0,
    paraphrase: bool = True,
    limit: int | None = None,
) -> Any:
    """SFT rows: the GRPO columns plus ``completion``, the assistant turn that answers the prompt."""
    template = _template(template_id)
    rows = _rows(_pairs(pairs_path, limit), template, seed, paraphrase)
    rows["completion"] = [
        [{"role": "assistant", "content": [{"type": "text", "text": sft_completion(Box.from_seq(s), c, template)}]}]
        for s, c in zip(rows["solution"], rows["category"], strict=True)
    ]
    return _to_dataset(rows)
