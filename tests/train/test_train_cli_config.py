"""TRL-native configs and the run contract of ``differad-train``: pass-through of any TRL key (TRL
validates it), "did you mean" for typos, configs by name, --print-config, --overwrite, report_to
back-ends, CPU detection, any prompt template; and (slow) complete checkpoints, resume, diagnostics."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from differad_edge.train.cli import main
from differad_edge.train.config import load_config, resolve_template, shipped_configs

from differad_edge.errors import ConfigError
from differad_edge.prompts import NOTHINK_TEMPLATE, PROMPT_FILE

REQUIRED = ["model.path=m", "data.pairs=p.jsonl", "output_dir=out"]
BIN = Path(sys.executable).parent


def test_any_trl_key_passes_through_and_trl_sees_it(tmp_path) -> None:
    from differad_edge.train.jobs import _common_args
    from trl import GRPOConfig, SFTConfig

    job = load_config(
        "sft",
        None,
        [
            *REQUIRED,
            "train.weight_decay=0.123",
            "train.lr_scheduler_type=cosine",
            "train.warmup_steps=3",
            "train.eval_strategy=no",
            "train.use_cpu=true",
        ],
    )
    assert job.train.trl_extra() == {
        "weight_decay": 0.123,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 3,
        "eval_strategy": "no",
    }
    args = SFTConfig(**_common_args(job, tmp_path))
    assert (args.weight_decay, str(args.lr_scheduler_type.value), args.warmup_steps) == (0.123, "cosine", 3)
    authors = load_config("grpo", "grpo_authors", REQUIRED + ["train.use_cpu=true", "model.dtype=fp32"])
    g = GRPOConfig(**_common_args(authors, tmp_path), beta=authors.train.beta, loss_type=authors.train.loss_type)
    assert (g.beta, g.loss_type, g.mask_truncated_completions) == (0.04, "grpo", True)
    assert authors.train.resample_on == "loc"
    assert authors.train.learning_rate == 1e-6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.weight_decai=0.1"], "did you mean 'weight_decay'"),
        (["train.learnig_rate=1e-5"], "did you mean 'learning_rate'"),
        (["model.dtyp=fp32"], "did you mean 'dtype'"),
        (["diagnostics.step=5"], "did you mean 'steps'"),
        (["train.bf16=true"], "set model.dtype instead"),
        (["train.output_dir=x"], "top-level output_dir"),
    ],
)
def test_unknown_keys_suggest_the_closest(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("sft", None, REQUIRED + overrides)


def test_configs_by_name_and_print_config(capsys) -> None:
    assert {"sft", "grpo_authors", "grpo_lora_24gb", "grpo_zero3"} <= set(shipped_configs())
    assert load_config("sft", "sft", REQUIRED).train.max_length == 2048
    with pytest.raises(ConfigError, match="did you mean 'sft'"):
        load_config("sft", "sfft", REQUIRED)
    assert main(["sft", "--config", "sft", "--print-config", *REQUIRED, "train.weight_decay=0.01"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["weight_decay"] == 0.01
    assert printed["model"]["path"] == "m"
    assert printed["diagnostics"]["enabled"] is True


def test_help_lists_the_keys(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["grpo", "--help"])
    out = capsys.readouterr().out
    assert "train.resample_on" in out
    assert "reward.variant" in out
    assert "any field of trl.GRPOConfig" in out


def test_report_to_missing_backend_is_one_line(tiny_model_dir, synth_pairs, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "sft",
                f"model.path={tiny_model_dir}",
                f"data.pairs={synth_pairs}",
                f"output_dir={out}",
                "train.report_to=[tensorboard]",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "differad-edge[tensorboard]" in err
    assert not out.exists()


def test_existing_output_needs_overwrite(tiny_model_dir, synth_pairs, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("x")
    assert main(["sft", f"model.path={tiny_model_dir}", f"data.pairs={synth_pairs}", f"output_dir={out}"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "old.txt").exists()
    assert main(["synth", "--out", str(out), "--count", "2", "--size", "32"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "old.txt").exists()
    assert main(["merge", "--base", str(tiny_model_dir), "--adapter", str(tmp_path), "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "old.txt").exists()
    assert main(["synth", "--out", str(out), "--count", "2", "--size", "32", "--overwrite"]) == 0
    assert not (out / "old.txt").exists()
    assert (out / "pairs.jsonl").is_file()


def test_cpu_detected_means_fp32_and_use_cpu(caplog) -> None:
    import torch
    from differad_edge.train.jobs import prepare_run

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    job = load_config("sft", "sft", ["model.path=m", "data.pairs=p", "output_dir=/nonexistent/never"])
    assert job.model.dtype == "bf16"
    assert not job.train.use_cpu
    with caplog.at_level(logging.INFO, logger="differad_edge.train.jobs"):
        prepare_run(job)
    assert job.model.dtype == "fp32"
    assert job.train.use_cpu
    assert [r.getMessage() for r in caplog.records if "no CUDA device" in r.getMessage()]


def test_any_prompt_template(tiny_model_dir, tmp_path) -> None:
    custom = {**NOTHINK_TEMPLATE.to_dict(), "id": "custom-v1", "system": "You inspect castings."}
    f = tmp_path / "tpl.json"
    f.write_text(json.dumps(custom))
    assert resolve_template(str(f)).id == "custom-v1"
    assert (
        resolve_template("model", str(tiny_model_dir)).id
        == json.loads((tiny_model_dir / PROMPT_FILE).read_text())["id"]
    )
    assert resolve_template(str(tiny_model_dir)).id == resolve_template("model", str(tiny_model_dir)).id
    job = load_config("grpo", None, REQUIRED + [f"data.template={f}"])
    assert job.template.system == "You inspect castings."
    assert not job.think
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("grpo", None, REQUIRED + [f"data.template={tmp_path / 'none.json'}"])


def _log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_sft_checkpoints_resume_and_diagnostics(tiny_model_dir, tmp_path, caplog) -> None:
    """One shipped config by name on the CPU (no dtype/use_cpu overrides), a custom template, held-out
    diagnostics, complete checkpoints that the engine and `differad eval` load with their template,
    resume, and --overwrite."""
    from differad_edge.engines.vlm import VLMEngine
    from differad_edge.synth import generate_dataset

    pairs = generate_dataset(tmp_path / "pairs", count=12, seed=3, size=64, progress=False)
    tpl = tmp_path / "tpl.json"
    tpl.write_text(json.dumps({**NOTHINK_TEMPLATE.to_dict(), "id": "custom-v1", "system": "You inspect castings."}))
    out = tmp_path / "sft"
    run = [
        "sft",
        "--config",
        "sft",
        f"model.path={tiny_model_dir}",
        f"data.pairs={pairs}",
        f"output_dir={out}",
        f"data.template={tpl}",
        "train.save_steps=1",
        "train.per_device_train_batch_size=2",
        "train.gradient_accumulation_steps=1",
        "train.learning_rate=1e-3",
        "lora.r=4",
        "lora.alpha=8",
        "model.gradient_checkpointing=false",
        "diagnostics.steps=1",
        "diagnostics.max_new_tokens=6",
        "train.disable_tqdm=true",
    ]
    with caplog.at_level(logging.INFO):
        assert main([*run, "train.max_steps=2"]) == 0
    assert any("no CUDA device: training on the CPU in fp32" in r.getMessage() for r in caplog.records)

    # held-out diagnostics at steps 0, 1, 2 with the baselines beside them
    diag = [r for r in _log_rows(out) if "diag/acc30" in r]
    assert [r["step"] for r in diag] == [0, 1, 2]
    for key in (
        "diag/zero_acc30",
        "diag/fixed_acc30",
        "diag/miou",
        "diag/valid_rate",
        "diag/loss_real",
        "diag/loss_shuffled",
    ):
        assert key in diag[-1]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["diagnostics"]["last"]["step"] == 2
    assert summary["baselines"]["diag/zero_acc30"] >= 0
    assert (out / "train_curves.png").stat().st_size > 5000

    # every checkpoint is a complete model folder with the training template
    for step in (1, 2):
        merged = out / "checkpoints" / f"checkpoint-{step}" / "merged"
        assert json.loads((merged / PROMPT_FILE).read_text())["id"] == "custom-v1"
        assert VLMEngine(merged, max_new_tokens=4).template.id == "custom-v1"
    ev = subprocess.run(
        [
            str(BIN / "differad"),
            "eval",
            "--engine",
            "vlm",
            "--model",
            str(merged),
            "--data",
            str(pairs),
            "--limit",
            "2",
            "--no-align",
            "--no-progress",
            "--max-new-tokens",
            "4",
            "--out",
            str(tmp_path / "eval"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ev.returncode == 0, ev.stderr[-2000:]

    # reuse needs --overwrite; resume continues in place from the last checkpoint
    assert main([*run, "train.max_steps=3"]) == 2
    assert main([*run, "train.max_steps=3", "train.resume_from_checkpoint=true"]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 3
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert [r["step"] for r in _log_rows(out) if "loss" in r][:2] == [1, 2]  # the resumed run appended

    # --overwrite starts afresh; a full fine-tune's checkpoint folder itself is the model folder
    assert (
        main(
            [
                *run,
                "train.max_steps=1",
                "lora.enabled=false",
                "merge_lora=false",
                "diagnostics.enabled=false",
                "--overwrite",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-1"]
    assert VLMEngine(out / "checkpoints" / "checkpoint-1", max_new_tokens=4).template.id == "custom-v1"
