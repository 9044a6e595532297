"""The memorized fixture model: deterministic, answers its own pairs through the real engine, and the
image-use check tells it (real << shuffled loss) from a random model (equal losses)."""

from __future__ import annotations

import json

import pytest
from differad_edge.train.diagnostics import HeldOut, image_use_losses
from differad_edge.train.fixture import MemorizeSettings, make_memorized_model, memorized_pairs

from differad_edge.boxes import iou
from differad_edge.dataset import pair_box_model_scale, read_pairs
from differad_edge.errors import ConfigError
from differad_edge.images import load_image
from differad_edge.parsing import parse_answer
from differad_edge.prompts import get_template


def _losses(model_dir, pairs):
    from transformers import Qwen3VLForConditionalGeneration

    from differad_edge.vlm.loader import load_processor

    model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir).eval()
    template = get_template(json.loads((model_dir / "differad_prompt.json").read_text())["id"])
    held = HeldOut.from_pairs(pairs, template)
    return image_use_losses(model, load_processor(model_dir), template, held.images, held.answers)


@pytest.mark.slow
def test_image_use_check_separates_memorized_from_random(memorized_model_dir, tiny_model_dir) -> None:
    pairs = read_pairs(memorized_pairs(memorized_model_dir)).pairs[:8]
    real, shuffled = _losses(memorized_model_dir, pairs)
    assert real < 0.1, (real, shuffled)
    assert shuffled > 10 * real, (real, shuffled)  # it reads the images
    real_r, shuffled_r = _losses(tiny_model_dir, pairs)
    assert abs(shuffled_r - real_r) < 0.05 * real_r, (real_r, shuffled_r)  # random weights: images change nothing


@pytest.mark.slow
def test_memorized_model_answers_its_pairs_in_the_vlm_engine(memorized_model_dir) -> None:
    from differad_edge.engines.vlm import VLMEngine
    from differad_edge.reference import Reference

    info = json.loads((memorized_model_dir / "differad_model.json").read_text())
    assert info["memorized"]
    assert not info["random_weights"]
    assert "not general" in info["limits"]
    engine = VLMEngine(memorized_model_dir, max_new_tokens=24)
    pairs = read_pairs(memorized_pairs(memorized_model_dir)).pairs
    hits = 0
    for p in pairs:
        handle = engine.prepare(Reference(load_image(p.reference)))
        answer = parse_answer(engine.detect(handle, load_image(p.target)).text)
        gt = pair_box_model_scale(p)
        hit = answer.valid and (answer.box.is_zero if gt.is_zero else iou(answer.box, gt) >= 0.3)
        hits += hit
    assert hits / len(pairs) >= 0.9  # measured: 16/16 exact boxes with the default settings


def test_memorized_model_is_deterministic_and_refuses_overwrite(tmp_path) -> None:
    s = MemorizeSettings(count=4, steps=3, image_size=64)
    a, b = make_memorized_model(tmp_path / "a", s), make_memorized_model(tmp_path / "b", s)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="exists and is not empty"):
        make_memorized_model(a, s)
    with pytest.raises(ConfigError, match="not a memorized fixture"):
        memorized_pairs(tmp_path)


def test_make_model_memorized_cli_refuses_other_sizes(tmp_path, capsys) -> None:
    from differad_edge.cli.main import main

    assert main(["dev", "make-model", "--memorized", "--size", "small", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("differad: error: --memorized trains the tiny model")
    assert "\n" not in err
