"""Model factory + loader: round-trip of a random checkpoint, and the loader's refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from differad_edge.engines.vlm import VLMEngine
from differad_edge.errors import ConfigError, ModelLoadError
from differad_edge.prompts import DEFAULT_INFERENCE_TEMPLATE, PROMPT_FILE, THINK_TEMPLATE
from differad_edge.vlm.factory import make_model, param_count
from differad_edge.vlm.loader import load_model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return load_model(tiny_model_dir)


def test_tiny_folder_is_small_and_safetensors_only(tiny_model_dir: Path) -> None:
    files = {f.name for f in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", PROMPT_FILE} <= files
    assert not any(f.endswith((".bin", ".pt")) for f in files)
    assert sum(f.stat().st_size for f in tiny_model_dir.iterdir()) <= 5 * 1024 * 1024
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    assert cfg["model_type"] == "qwen3_vl"
    assert min(cfg["text_config"]["hidden_size"], cfg["vision_config"]["hidden_size"]) >= 64


def test_load_round_trip(tiny_model_dir: Path, tiny) -> None:
    from safetensors.torch import load_file

    saved = load_file(str(tiny_model_dir / "model.safetensors"))
    state = tiny.model.state_dict()
    assert saved, "no tensors written"
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    assert tiny.template is not None
    assert tiny.template.id == DEFAULT_INFERENCE_TEMPLATE
    assert tiny.info["model_type"] == "qwen3_vl"
    assert tiny.info["dtype"] == "fp32"
    assert tiny.info["quant"] is None
    text = "<|im_start|>user\n<think>a dent</think><answer>(1,2),(3,4)</answer><|im_end|>"
    assert tiny.tokenizer.decode(tiny.tokenizer(text)["input_ids"]) == text
    assert tiny.tokenizer.convert_tokens_to_ids("<|image_pad|>") == tiny.model.config.image_token_id


def test_chat_template_renders_reference_first(tiny) -> None:
    msgs = THINK_TEMPLATE.messages()
    text = tiny.processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>assistant\n")


def test_same_seed_same_weights_and_template_choice(tmp_path: Path) -> None:
    a = make_model(tmp_path / "a", size="tiny", seed=3, template_id=THINK_TEMPLATE.id)
    b = make_model(tmp_path / "b", size="tiny", seed=3)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert json.loads((a / PROMPT_FILE).read_text())["id"] == THINK_TEMPLATE.id
    engine = VLMEngine(a)  # the engine defaults to the template stored with the model
    assert engine.template.id == THINK_TEMPLATE.id
    assert engine.max_new_tokens == 512
    with pytest.raises(ConfigError, match="not empty"):
        make_model(a, size="tiny")
    with pytest.raises(ConfigError, match="unknown model size"):
        make_model(tmp_path / "c", size="huge")  # type: ignore[arg-type]


def test_2b_shape_matches_qwen3_vl_2b() -> None:
    # Qwen3-VL-2B-Instruct has ~2.13e9 parameters (tied embeddings); counted on the meta device.
    assert 2.05e9 < param_count("2b") < 2.2e9
    assert 50e6 <= param_count("small") <= 150e6


def test_refuses_missing_folder_and_hub_id(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="never downloads"):
        load_model("Qwen/Qwen3-VL-2B-Instruct")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope")


def test_refuses_pickled_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    bad = tmp_path / "bin-only"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "model.safetensors").unlink()
    (bad / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="safetensors only"):
        load_model(bad)


@pytest.mark.parametrize(("model_type", "match"), [("llama", "not a Qwen-VL"), ("qwen2_5_vl", "not supported yet")])
def test_refuses_other_architectures(tmp_path: Path, tiny_model_dir: Path, model_type: str, match: str) -> None:
    bad = tmp_path / model_type
    shutil.copytree(tiny_model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_type"] = model_type
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=match):
        load_model(bad)


@pytest.mark.parametrize("kwargs", [{"dtype": "fp8"}, {"quant": "int3"}, {"device": "tpu"}])
def test_refuses_bad_options(tiny_model_dir: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        load_model(tiny_model_dir, **kwargs)


def test_bf16_load(tiny_model_dir: Path) -> None:
    lm = load_model(tiny_model_dir, dtype="bf16")
    assert {p.dtype for p in lm.model.parameters()} == {torch.bfloat16}
    assert lm.identity != load_model(tiny_model_dir).identity


def test_truncated_weights_are_a_load_error_not_a_traceback(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    from differad_edge.cli.main import main

    bad = tmp_path / "truncated"
    shutil.copytree(tiny_model_dir, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[:1000])  # an interrupted copy
    with pytest.raises(ModelLoadError, match="could not load the weights"):
        load_model(bad)
    ref = tmp_path / "ref.png"
    from differad_edge.images import save_image

    save_image(ref, np.zeros((64, 64, 3), np.uint8))
    rc = main(["inspect", "--engine", "vlm", "--model", str(bad), "-r", str(ref), "-t", str(ref), "--no-align"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "could not load the weights" in err
    assert "Traceback" not in err


def test_missing_tokenizer_files_are_named(tmp_path: Path, tiny_model_dir: Path) -> None:
    bad = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model_dir, bad)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (bad / name).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match=r"tokenizer maps <\|image_pad\|>.*image_token_id"):
        load_model(bad)


def test_remote_code_in_the_folder_is_never_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "with-remote-code"
    shutil.copytree(tiny_model_dir, folder)
    sentinel = tmp_path / "remote_code_ran"
    (folder / "evil.py").write_text(f"open({str(sentinel)!r}, 'w').write('x')\nEvilModel = EvilConfig = None\n")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForImageTextToText": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    loaded = load_model(folder)  # the built-in Qwen3-VL class, trust_remote_code=False
    assert type(loaded.model).__name__ == "Qwen3VLForConditionalGeneration"
    assert not sentinel.exists()


def test_unmerged_lora_output_points_to_the_merge_command(tmp_path: Path) -> None:
    run = tmp_path / "grpo_run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"LoRA adapter.*differad-train merge"):
        load_model(run)


def test_model_card_says_what_the_answers_are_worth(
    tmp_path: Path, tiny_model_dir: Path, memorized_model_dir: Path
) -> None:
    from differad_edge.vlm.model_card import MODEL_CARD, read_model_card

    tiny = read_model_card(tiny_model_dir)
    assert tiny is not None
    assert tiny.random_weights
    assert not tiny.memorized
    assert tiny.pairs_path(tiny_model_dir) is None
    mem = read_model_card(memorized_model_dir)
    assert mem is not None
    assert mem.memorized
    assert not mem.random_weights
    own = mem.pairs_path(memorized_model_dir)
    assert own is not None
    assert own.is_file()
    assert read_model_card(tmp_path) is None  # a checkpoint from elsewhere: no card, taken at face value
    for text in ("{not json", "[1, 2]"):
        (tmp_path / MODEL_CARD).write_text(text)
        with pytest.raises(ModelLoadError, match="model card"):
            read_model_card(tmp_path)
