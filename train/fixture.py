"""A fixture model with real answers: a tiny Qwen3-VL trained until it has *memorized* a fixed set of
synthetic pairs (``differad dev make-model --memorized``).

Random weights cannot judge anything that depends on the answers (export agreement, answer grammar,
cached-vs-uncached parity, a node finding defects): they never emit a box. This model does, and its
boxes depend on the images: on its own pairs it answers ``<answer>(x1,y1),(x2,y2)</answer>`` near
the ground truth, and with the images of another pair it answers that pair's box.

Limits (stated in ``differad_model.json``): it is *memorized*, not general. On pairs it has not
seen its answers are well-formed but their boxes are meaningless; do not read any accuracy on new
data from it. Deterministic by seed on one machine (CPU, fp32, single-threaded ops are
deterministic; training runs single-threaded for that); another CPU type may round differently.

Training is a plain torch loop (no TRL), full fine-tuning of the tiny model, all pairs in one
batch, the no-think template at paraphrase 0 (the engine's default prompt), so the engine and
export build exactly the prompt it learned.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from differad_edge.errors import ConfigError
from differad_edge.fileio import atomic_write_json
from differad_edge.prompts import DEFAULT_INFERENCE_TEMPLATE, PROMPT_FILE, get_template
from differad_edge.vlm.model_card import MODEL_CARD

logger = logging.getLogger(__name__)

#: Where the memorized pairs live inside the model folder (images + ``pairs.jsonl``).
PAIRS_DIR = "memorized_pairs"


@dataclass(frozen=True)
class MemorizeSettings:
    """What the fixture is trained on and for how long (defaults measured to fit well under 5 min)."""

    count: int = 16
    image_size: int = 128
    steps: int = 120  # 80 sufficed while <answer> was one token; Qwen-faithful tags need a wider int4 margin
    learning_rate: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.count < 2 or self.steps < 1 or self.image_size < 32 or self.learning_rate <= 0:
            raise ConfigError(f"bad memorize settings {self}; need count >= 2, steps >= 1, image_size >= 32, lr > 0")


def answer_text(solution: list[int]) -> str:
    x1, y1, x2, y2 = solution
    return f"<answer>({x1},{y1}),({x2},{y2})</answer>"


def teacher_forced_batch(processor: Any, template: Any, images: list[list[Any]], answers: list[str]) -> dict[str, Any]:
    """Processor inputs plus ``labels`` that score only the answer tokens (prompt and padding -> -100).

    Shared by the fixture's training and the image-use check (``diagnostics.image_use_losses``).
    """
    import torch

    prompt = processor.apply_chat_template(template.messages(), add_generation_prompt=True, tokenize=False)
    eos = processor.tokenizer.eos_token or ""
    texts = [prompt + a + eos for a in answers]
    flat = [img for pair in images for img in pair]
    processor.tokenizer.padding_side = "right"
    enc = processor(text=texts, images=flat, return_tensors="pt", padding=True)
    n_prompt = len(processor(text=[prompt], images=images[0], return_tensors="pt")["input_ids"][0])
    labels = enc["input_ids"].clone()
    labels[:, :n_prompt] = -100
    labels[enc["attention_mask"] == 0] = -100
    return {**enc, "labels": torch.as_tensor(labels)}


def make_memorized_model(
    out_dir: str | os.PathLike,
    settings: MemorizeSettings = MemorizeSettings(),
    overwrite: bool = False,
) -> Path:
    """Train the tiny model on ``settings.count`` synthetic pairs until it answers them; returns the folder.

    Measured on the shared 2-core CPU of this project: ~30-60 s of training (120 steps), 16/16 exact
    boxes through the ``vlm`` engine; its int4 bundle keeps the boxes (mean IoU 0.94 on its 16 pairs).

    The folder is a complete model folder (loads in ``--engine vlm`` and ``differad-export``) plus
    ``memorized_pairs/pairs.jsonl`` (the pairs it knows) and ``differad_model.json`` (settings,
    training loss, accuracy on its own pairs, limits). Built next to ``out_dir``, moved in at the end.
    """
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from differad_edge.dataset import read_pairs
    from differad_edge.images import load_image
    from differad_edge.synth import generate_dataset
    from differad_edge.vlm.factory import make_model, mark_processor_class
    from differad_edge.vlm.loader import load_processor

    from .data import build_grpo_dataset

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"model folder {out} exists and is not empty; choose a new folder or pass --overwrite")
    s = settings
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    threads = torch.get_num_threads()
    try:
        template = get_template(DEFAULT_INFERENCE_TEMPLATE)
        make_model(tmp / "model", size="tiny", seed=s.seed, template_id=template.id)
        pairs_path = generate_dataset(tmp / "model" / PAIRS_DIR, s.count, s.seed, size=s.image_size, progress=False)
        rows = build_grpo_dataset(pairs_path, template.id, paraphrase=False)
        processor = load_processor(tmp / "model")
        # the engine's size policy keeps small images as they are; the processor must not upscale them
        processor.image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": 800 * 800}
        images = [[load_image(p.reference), load_image(p.target)] for p in read_pairs(pairs_path).pairs]
        answers = [answer_text(sol) for sol in rows["solution"]]
        torch.manual_seed(s.seed)
        torch.set_num_threads(1)  # same reduction order on every machine (determinism), and no oversubscription
        model = Qwen3VLForConditionalGeneration.from_pretrained(tmp / "model", dtype=torch.float32)
        model.train()
        batch = teacher_forced_batch(processor, template, images, answers)
        opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / 10))  # short warm-up
        loss_first = loss_last = float("nan")
        for step in range(s.steps):
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_last = float(loss.detach())
            if step == 0:
                loss_first = loss_last
            if step % 25 == 0:
                logger.info("memorize step %d/%d: loss %.4f", step, s.steps, loss_last)
        model.eval()
        model.save_pretrained(tmp / "model", safe_serialization=True)
        processor.save_pretrained(tmp / "model")
        mark_processor_class(tmp / "model")
        atomic_write_json(tmp / "model" / PROMPT_FILE, template.to_dict())
        info = {
            "factory_size": "tiny",
            "seed": s.seed,
            "random_weights": False,
            "memorized": True,
            "settings": asdict(s),
            "pairs": f"{PAIRS_DIR}/pairs.jsonl",
            "template": template.id,
            "loss_first": loss_first,
            "loss_last": loss_last,
            "train_seconds": round(time.perf_counter() - t0, 1),
            "limits": "memorized, not general: answers on its own pairs only; boxes on unseen pairs are meaningless",
        }
        atomic_write_json(tmp / "model" / MODEL_CARD, info)
        if out.is_dir():
            shutil.rmtree(out) if overwrite else out.rmdir()
        elif out.exists():
            out.unlink()
        os.replace(tmp / "model", out)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def memorized_pairs(model_dir: str | os.PathLike) -> Path:
    """The ``pairs.jsonl`` a memorized fixture model was trained on."""
    p = Path(model_dir) / PAIRS_DIR / "pairs.jsonl"
    if not p.is_file():
        raise ConfigError(
            f"{model_dir} is not a memorized fixture model (no {PAIRS_DIR}/pairs.jsonl); "
            "make one with `differad dev make-model --memorized DIR`"
        )
    return p
