"""Honest learning diagnostics: is the model learning the task, or a shortcut?

A falling training loss says little here: a model that always answers the zero box reaches 100 %
valid format and a low loss on a set with 25 % normals, and a model that ignores the images can
still fit the answer *distribution*. So at the start, every ``diagnostics.steps`` steps and at the
end, on a held-out split, this logs

- the project's metrics (``metrics.compute_metrics``: Acc@0.3, F1@0.3, mIoU) and the valid-answer
  rate of greedy answers, read by the evaluation protocol (``parse_answer``, as ``differad eval``);
- the same metrics of two baselines that need no images: always the zero box, and the best fixed
  box (the one box that scores best on the *training* split). A model below them has learned nothing
  about the images;
- the image-use check: the loss of the correct answer with the pair's own images vs with another
  pair's images (every pair's images swapped for the next pair's). Equal losses mean the model
  ignores the images, whatever its training loss does.

All keys start with ``diag/``; ``train_curves.png`` draws them with the baselines as lines.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from differad_edge.boxes import ZERO_BOX, Box
from differad_edge.dataset import Pair, pair_box_model_scale
from differad_edge.images import load_image
from differad_edge.metrics import Record, compute_metrics
from differad_edge.parsing import parse_answer
from differad_edge.prompts import PromptTemplate

from .data import sft_completion

logger = logging.getLogger(__name__)

#: Candidate boxes tried for the best-fixed-box baseline (the training solutions, capped), and the
#: training solutions they are scored on (a seeded sample: 256 x 2000 IoUs stay about a second).
MAX_FIXED_CANDIDATES = 256
MAX_FIXED_SCORED = 2000


def _metrics(preds: Sequence[Box | None], valid: Sequence[bool], gts: Sequence[Box]) -> dict[str, float]:
    m = compute_metrics([Record(p, g, v) for p, v, g in zip(preds, valid, gts, strict=True)])
    return {
        "acc30": m.acc30 or 0.0,
        "f1": m.f1 or 0.0,
        "miou": m.miou or 0.0,
        "valid_rate": sum(valid) / len(valid) if valid else 0.0,
    }


def best_fixed_box(train_solutions: Sequence[Box]) -> Box:
    """The one box that, answered for every training pair, scores best (Acc@0.3, then mIoU)."""
    import random

    if len(train_solutions) > MAX_FIXED_SCORED:
        train_solutions = random.Random(0).sample(list(train_solutions), MAX_FIXED_SCORED)
    candidates = list(dict.fromkeys([ZERO_BOX, *train_solutions]))[:MAX_FIXED_CANDIDATES]
    ones = [True] * len(train_solutions)

    def score(b: Box) -> tuple[float, float]:
        m = _metrics([b] * len(train_solutions), ones, train_solutions)
        return m["acc30"], m["miou"]

    return max(candidates, key=score)


def baselines(train_solutions: Sequence[Box], eval_solutions: Sequence[Box]) -> dict[str, float]:
    """Held-out metrics of always-zero and best-fixed-box answers (``diag/zero_*``, ``diag/fixed_*``)."""
    ones = [True] * len(eval_solutions)
    fixed = best_fixed_box(train_solutions) if train_solutions else ZERO_BOX
    out: dict[str, float] = {}
    for name, box in (("zero", ZERO_BOX), ("fixed", fixed)):
        for k, v in _metrics([box] * len(eval_solutions), ones, eval_solutions).items():
            if k != "valid_rate":
                out[f"diag/{name}_{k}"] = v
    return out


def _inputs(processor: Any, template: PromptTemplate, images: list[Any], answer: str | None, device: Any) -> dict:
    """One row: prompt (+ answer and EOS, with the prompt masked out of ``labels`` when ``answer`` is given)."""
    prompt = processor.apply_chat_template(template.messages(), add_generation_prompt=True, tokenize=False)
    enc = processor(text=[prompt], images=images, return_tensors="pt")
    if answer is not None:
        n_prompt = enc["input_ids"].shape[1]
        enc = processor(
            text=[prompt + answer + (processor.tokenizer.eos_token or "")], images=images, return_tensors="pt"
        )
        labels = enc["input_ids"].clone()
        labels[:, :n_prompt] = -100
        enc["labels"] = labels
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in enc.items()}


def answer_loss(model: Any, processor: Any, template: PromptTemplate, images: list[Any], answer: str) -> float:
    """Mean token NLL of ``answer`` after the prompt with these two images (teacher forcing)."""
    import torch

    with torch.no_grad():
        return float(model(**_inputs(processor, template, images, answer, model.device)).loss)


def image_use_losses(
    model: Any, processor: Any, template: PromptTemplate, images: Sequence[list[Any]], answers: Sequence[str]
) -> tuple[float, float]:
    """(mean loss with each pair's own images, mean loss with the next pair's images)."""
    n = len(images)
    if n < 2:
        return math.nan, math.nan
    real = [answer_loss(model, processor, template, images[i], answers[i]) for i in range(n)]
    shuffled = [answer_loss(model, processor, template, images[(i + 1) % n], answers[i]) for i in range(n)]
    return sum(real) / n, sum(shuffled) / n


def generate_answer(
    model: Any, processor: Any, template: PromptTemplate, images: list[Any], max_new_tokens: int
) -> str:
    """The greedy answer to the inference prompt (paraphrase 0), as the engine would ask it."""
    import torch

    enc = _inputs(processor, template, images, None, model.device)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


@dataclass
class HeldOut:
    """The held-out pairs, their images, model-scale solutions and loss targets."""

    pairs: list[Pair]
    images: list[list[Any]]
    solutions: list[Box]
    answers: list[str]

    @classmethod
    def from_pairs(cls, pairs: Sequence[Pair], template: PromptTemplate) -> HeldOut:
        from PIL import Image

        images = [[Image.fromarray(load_image(p.reference)), Image.fromarray(load_image(p.target))] for p in pairs]
        sols = [pair_box_model_scale(p) for p in pairs]
        answers = [
            sft_completion(Box(*(round(v) for v in s.as_tuple())), p.category, template)
            for s, p in zip(sols, pairs, strict=True)
        ]
        return cls(list(pairs), images, sols, answers)


def evaluate_model(
    model: Any,
    processor: Any,
    template: PromptTemplate,
    held: HeldOut,
    max_new_tokens: int = 64,
    image_check: bool = True,
) -> dict[str, float]:
    """``diag/*`` metrics of the model on the held-out pairs (model put in eval mode, restored after)."""
    was_training = model.training
    model.eval()
    try:
        texts = [generate_answer(model, processor, template, imgs, max_new_tokens) for imgs in held.images]
        parsed = [parse_answer(t) for t in texts]  # the evaluation protocol, as `differad eval` reads answers
        row = {
            f"diag/{k}": v
            for k, v in _metrics([p.box for p in parsed], [p.valid for p in parsed], held.solutions).items()
        }
        if image_check:
            real, shuffled = image_use_losses(model, processor, template, held.images, held.answers)
            row.update({"diag/loss_real": real, "diag/loss_shuffled": shuffled, "diag/image_gain": shuffled - real})
    finally:
        model.train(was_training)
    return row


def describe(row: dict[str, float], base: dict[str, float]) -> str:
    """One log line: the model's held-out numbers beside the baselines and the image-use check."""
    text = (
        f"held-out Acc@0.3 {row['diag/acc30']:.3f} (zero box {base['diag/zero_acc30']:.3f}, "
        f"best fixed box {base['diag/fixed_acc30']:.3f}), mIoU {row['diag/miou']:.3f}, "
        f"valid {row['diag/valid_rate']:.2f}"
    )
    if "diag/loss_real" in row:
        text += f"; answer loss real images {row['diag/loss_real']:.3f} vs shuffled {row['diag/loss_shuffled']:.3f}"
    return text


def diagnostics_callback(
    held: HeldOut,
    train_solutions: Sequence[Box],
    processor: Any,
    template: PromptTemplate,
    every: int,
    max_new_tokens: int,
    image_check: bool,
    write_row: Any,
) -> Any:
    """A ``TrainerCallback`` that evaluates at train begin, every ``every`` steps and at train end.

    Rows go into ``state.log_history`` (so the summary and the curves see them) and to ``write_row``
    (the run's ``train_log.jsonl``). Every rank evaluates (ZeRO-3 gathers need all of them); rank 0 logs.
    """
    from transformers import TrainerCallback

    base = baselines(train_solutions, held.solutions)

    class Diagnostics(TrainerCallback):
        def __init__(self) -> None:
            self.last_step = -1
            self.baselines = base

        def _run(self, state: Any, model: Any) -> None:
            if model is None or state.global_step == self.last_step:
                return
            self.last_step = state.global_step
            row = {
                "step": state.global_step,
                **evaluate_model(model, processor, template, held, max_new_tokens, image_check),
                **base,
            }
            if state.is_world_process_zero:
                state.log_history.append(row)
                write_row(row)
                logger.info("step %d: %s", state.global_step, describe(row, base))
                gain = row.get("diag/image_gain")
                if state.global_step > 0 and gain is not None and abs(gain) < 0.02 * max(row["diag/loss_real"], 1e-9):
                    logger.warning(
                        "step %d: the answer loss is the same with shuffled images (%.4f vs %.4f): "
                        "the model does not use the images yet",
                        state.global_step,
                        row["diag/loss_real"],
                        row["diag/loss_shuffled"],
                    )

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self._run(state, model)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if state.global_step % every == 0:
                self._run(state, model)

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self._run(state, model)

    return Diagnostics()
