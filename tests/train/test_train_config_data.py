"""Configs (YAML + overrides, one-line errors) and the pairs -> datasets conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from differad_edge.train.config import load_config

from differad_edge.coords import to_model_scale
from differad_edge.dataset import read_pairs
from differad_edge.errors import ConfigError, DatasetError
from differad_edge.images import load_image
from differad_edge.prompts import INSTRUCTIONS, THINK_TEMPLATE

CONFIGS = Path(__file__).resolve().parents[2] / "train" / "configs"
REQUIRED = ["model.path=m", "data.pairs=p.jsonl", "output_dir=out"]


@pytest.mark.parametrize(
    ("kind", "name"), [("grpo", "grpo_lora_24gb.yaml"), ("grpo", "grpo_zero3.yaml"), ("sft", "sft.yaml")]
)
def test_shipped_configs_validate(kind, name) -> None:
    job = load_config(kind, CONFIGS / name)
    assert job.model.freeze_vision
    if kind == "grpo":
        assert (job.train.num_generations, job.train.temperature, job.train.max_completion_length) == (8, 0.9, 256)
        assert job.train.resample
        assert job.train.difficulty_weighting
        assert (job.reward.alpha, job.reward.lam, job.reward.tau) == (0.6, 0.3, 0.3)


def test_defaults_match_the_paper() -> None:
    job = load_config("grpo", None, REQUIRED)
    assert job.train.learning_rate == 1e-6
    assert job.train.num_generations == 8
    assert job.reward.variant == "dclr"
    assert job.reward.delta == 0.0
    assert job.think


def test_overrides_are_typed_and_nested(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {path: base}\ndata: {pairs: p.jsonl}\noutput_dir: o\ntrain: {num_generations: 8}\n")
    job = load_config(
        "grpo",
        cfg,
        [
            "train.num_generations=4",
            "train.resample=false",
            "reward.variant=iou",
            "lora.target_modules=[q_proj, v_proj]",
            "reward.tau=0.5",
        ],
    )
    assert job.train.num_generations == 4
    assert job.train.resample is False
    assert job.reward.variant == "iou"
    assert job.lora.target_modules == ["q_proj", "v_proj"]
    assert job.reward.params().tau == 0.5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.num_generations=1"], "num_generations"),
        (["train.nmu_generations=4"], "nmu_generations"),  # typo -> error, never a silent default
        (["reward.variant=giou"], "reward.variant"),
        (["model.quant=nf4", "lora.enabled=false"], "model.quant needs lora.enabled=true"),
        (["merge_lora=true", "lora.enabled=false"], "merge_lora needs lora.enabled"),
        (["reward.tau=2"], "tau=2"),
        (["data.template=nope"], "unknown prompt template"),
        (["train.deepspeed=ds.json", "model.quant=nf4"], "do not combine"),
        (["train.use_cpu=true", "model.dtype=fp16"], "fp16 does not train on CPU"),
        (["novalue"], "not KEY=VALUE"),
        (["model.path.x=1"], "is a value, not a section"),
    ],
)
def test_bad_configs_raise_config_error(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("grpo", None, REQUIRED + overrides)


def test_required_fields_and_bad_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="model.path is required"):
        load_config("sft", None, ["data.pairs=p", "output_dir=o"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("grpo", tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config("grpo", bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config("grpo", bad)


def test_cli_bad_config_is_one_line_exit_2(tmp_path, capsys) -> None:
    from differad_edge.train.cli import main

    assert main(["grpo", "--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("differad-train: error: config file not found")
    assert "\n" not in err
    assert main(["grpo", *REQUIRED, "train.num_generations=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "num_generations" in err
    assert "\n" not in err


def test_grpo_dataset_from_synth_pairs(synth_pairs) -> None:
    from differad_edge.train.data import build_grpo_dataset

    pairs = read_pairs(synth_pairs).pairs
    ds = build_grpo_dataset(synth_pairs, seed=3)
    assert len(ds) == len(pairs) == 8
    assert set(ds.column_names) >= {"prompt", "images", "solution", "id"}
    for row, pair in zip(ds, pairs, strict=True):
        ref, tgt = row["images"]
        assert np.array_equal(np.asarray(ref.convert("RGB")), load_image(pair.reference))  # reference first
        assert np.array_equal(np.asarray(tgt.convert("RGB")), load_image(pair.target))
        h, w = load_image(pair.target).shape[:2]
        assert row["solution"] == [int(v) for v in to_model_scale(pair.box, w, h).as_tuple()]
        user = row["prompt"][1]["content"]
        assert [p["type"] for p in user] == ["image", "image", "text"]
        text = user[2]["text"]
        k = next(i for i, s in enumerate(INSTRUCTIONS) if text.startswith(s))
        assert text == THINK_TEMPLATE.user_text(k)
        assert row["prompt"][0]["content"][0]["text"] == THINK_TEMPLATE.system
    assert sum(row["solution"] == [0, 0, 0, 0] for row in ds) == 2  # 25 % normals stay zero boxes
    again = build_grpo_dataset(synth_pairs, seed=3)
    assert again["prompt"] == ds["prompt"]  # paraphrases are deterministic by seed
    fixed = build_grpo_dataset(synth_pairs, paraphrase=False)
    assert {r[1]["content"][2]["text"] for r in fixed["prompt"]} == {THINK_TEMPLATE.user_text(0)}


def test_sft_dataset_targets(synth_pairs) -> None:
    from differad_edge.train.data import build_sft_dataset

    from differad_edge.parsing import is_strict_format, parse_answer

    ds = build_sft_dataset(synth_pairs, limit=4)
    assert len(ds) == 4
    for row in ds:
        text = row["completion"][0]["content"][0]["text"]
        assert is_strict_format(text)
        assert parse_answer(text).box.as_tuple() == tuple(float(v) for v in row["solution"])


def test_dataset_errors(tmp_path) -> None:
    from differad_edge.train.data import build_grpo_dataset

    with pytest.raises(DatasetError, match="not found"):
        build_grpo_dataset(tmp_path / "none.jsonl")
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"id": "1", "reference": "r.png", "target": "t.png", "box": [0,0,0,0], "category": "x"}\n')
    with pytest.raises(DatasetError, match="no usable pairs.*reference file not found"):
        build_grpo_dataset(bad)


def test_refused_runs_leave_no_output_folder(tiny_model_dir, synth_pairs, tmp_path, capsys) -> None:
    from differad_edge.train.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('garbage\n{"reference": "a.png"}\n')
    out = tmp_path / "out"
    common = [f"model.path={tiny_model_dir}", f"output_dir={out}", "train.use_cpu=true", "model.dtype=fp32"]
    assert main(["grpo", f"data.pairs={bad}", *common]) == 2  # unusable pairs
    assert "no usable pairs" in capsys.readouterr().err
    assert not out.exists()
    # a setting only TRL rejects (the batch of 16 does not split into groups of 3)
    assert main(["grpo", f"data.pairs={synth_pairs}", "train.num_generations=3", *common]) == 2
    assert "divisible by num_generations" in capsys.readouterr().err
    assert not out.exists()


def test_merge_with_unknown_template_writes_nothing(tiny_model_dir, tmp_path, capsys) -> None:
    from differad_edge.train.cli import main
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3VLForConditionalGeneration

    base = Qwen3VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    adapter = tmp_path / "adapter"
    get_peft_model(base, LoraConfig(r=2, target_modules=r".*language_model.*\.q_proj")).save_pretrained(adapter)
    out = tmp_path / "merged"
    assert (
        main(
            ["merge", "--base", str(tiny_model_dir), "--adapter", str(adapter), "--out", str(out), "--template", "nope"]
        )
        == 2
    )
    assert "unknown prompt template" in capsys.readouterr().err
    assert not out.exists()


def test_merge_refuses_pickled_adapters(tiny_model_dir, tmp_path, capsys) -> None:
    from differad_edge.train.cli import main

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"a pickle would run code here")
    out = tmp_path / "merged"
    assert main(["merge", "--base", str(tiny_model_dir), "--adapter", str(adapter), "--out", str(out)]) == 2
    assert "safetensors only" in capsys.readouterr().err
    assert not out.exists()
