"""End-to-end runs of ``differad-train`` on the tiny model (subprocesses, CPU): the checkpoints they
leave must train (weights move) and load in the ``vlm`` engine through ``differad inspect``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from differad_edge.boxes import box_from_mask
from differad_edge.dataset import read_pairs
from differad_edge.images import load_image
from differad_edge.prompts import PROMPT_FILE, THINK_TEMPLATE

BIN = Path(sys.executable).parent
TINY_RUN = [
    "model.dtype=fp32",
    "train.use_cpu=true",
    "train.max_steps=2",
    "train.num_generations=2",
    "train.per_device_train_batch_size=2",
    "train.gradient_accumulation_steps=1",
    "train.max_completion_length=8",
    "train.learning_rate=0.001",
    "train.save_steps=100",
]


def _run(
    cmd: list[str], extra_path: Path | None = None, timeout: int = 300, ok: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode in ok, f"{cmd[:3]} failed:\n{proc.stderr[-3000:]}"
    return proc


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out: dict[str, np.ndarray] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _changed(before: Path, after: Path) -> list[str]:
    a, b = _weights(before), _weights(after)
    assert set(a) == set(b), "the saved checkpoint must have the base model's tensor names"
    return [k for k in a if not np.array_equal(a[k], b[k])]


@pytest.mark.slow
def test_grpo_lora_merged_runs_in_vlm_engine(tiny_model_dir, synth_pairs, reward_module_dir, tmp_path) -> None:
    out = tmp_path / "grpo"
    cfg = tmp_path / "grpo.yaml"
    cfg.write_text(
        f"model: {{path: {tiny_model_dir}}}\ndata: {{pairs: {synth_pairs}, limit: 4}}\n"
        f"reward: {{extra: ['train_test_rewards:text_hash_reward']}}\noutput_dir: {out}\n"
    )
    _run(
        [
            str(BIN / "differad-train"),
            "grpo",
            "--config",
            str(cfg),
            "--merge-lora",
            *TINY_RUN,
            "lora.r=4",
            "lora.alpha=8",
            "lora.dropout=0.0",
            "train.difficulty_weighting=true",
        ],
        reward_module_dir,
    )

    changed = _changed(tiny_model_dir, out)
    assert changed
    assert all("language_model" in k for k in changed)
    assert json.loads((out / PROMPT_FILE).read_text())["id"] == THINK_TEMPLATE.id
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert not (out / "adapter" / "training_args.bin").exists()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for key in ("rewards/format_reward/mean", "rewards/dclr_reward/mean", "resample/rate", "difficulty/weight_mean"):
        assert key in steps[0]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["merged"] is True
    assert (out / "train_curves.png").stat().st_size > 1000

    ref, tgt = read_pairs(synth_pairs).pairs[1].reference, read_pairs(synth_pairs).pairs[1].target
    proc = _run(
        [
            str(BIN / "differad"),
            "inspect",
            "--engine",
            "vlm",
            "--model",
            str(out),
            "-r",
            str(ref),
            "-t",
            str(tgt),
            "--no-align",
            "--json",
            "--max-new-tokens",
            "8",
        ],
        ok=(0, 3),
    )
    det = json.loads(proc.stdout.strip().splitlines()[-1])
    assert det["engine"] == "vlm"
    assert "text" in det
    if proc.returncode == 3:  # 2 GRPO steps from random weights: an unreadable answer is NOT INSPECTED, never OK
        assert str(det.get("verdict")).lower() == "not_inspected"

    bundle = tmp_path / "bundle"  # and the export CLI turns it into a verified bundle
    _run(
        [
            str(BIN / "differad-export"),
            "--fp32",
            "--model",
            str(out),
            "--out",
            str(bundle),
            "--verify-count",
            "1",
            "--max-new-tokens",
            "4",
        ]
    )
    assert (bundle / "manifest.json").is_file()

    from differad_edge.train.cli import main

    later = tmp_path / "merged_later"  # merging the saved adapter afterwards gives the same weights
    assert (
        main(
            [
                "merge",
                "--base",
                str(tiny_model_dir),
                "--adapter",
                str(out / "adapter"),
                "--out",
                str(later),
                "--dtype",
                "fp32",
            ]
        )
        == 0
    )
    assert _changed(out, later) == []
    assert json.loads((later / PROMPT_FILE).read_text())["id"] == THINK_TEMPLATE.id


@pytest.mark.slow
def test_sft_two_steps_full_finetune(tiny_model_dir, synth_pairs, tmp_path) -> None:
    out = tmp_path / "sft"
    _run(
        [
            str(BIN / "differad-train"),
            "sft",
            f"model.path={tiny_model_dir}",
            f"data.pairs={synth_pairs}",
            f"output_dir={out}",
            "lora.enabled=false",
            "model.dtype=fp32",
            "train.use_cpu=true",
            "train.max_steps=2",
            "train.per_device_train_batch_size=2",
            "train.gradient_accumulation_steps=1",
            "train.learning_rate=0.001",
            "train.save_steps=100",
        ]
    )
    changed = _changed(tiny_model_dir, out)
    assert any("language_model" in k for k in changed)
    assert not any(".visual." in k for k in changed)  # frozen vision tower
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["kind"] == "sft"
    assert summary["steps"] == 2
    from differad_edge.vlm.loader import load_model

    loaded = load_model(out)  # the engine's loader accepts the result
    assert loaded.template is not None
    assert loaded.template.id == THINK_TEMPLATE.id


@pytest.mark.slow
def test_accelerate_two_processes(tiny_model_dir, synth_pairs, tmp_path) -> None:
    # accelerate 1.15's `--cpu` alone runs ONE process (multi-process CPU needs mpirun); `--multi_gpu` on a
    # machine without CUDA starts 2 gloo processes. G=4 with 2 rows per rank splits every group across ranks.
    out = tmp_path / "acc"
    _run(
        [
            str(BIN / "accelerate"),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "differad_edge.train.cli",
            "grpo",
            f"model.path={tiny_model_dir}",
            f"data.pairs={synth_pairs}",
            f"output_dir={out}",
            "lora.enabled=false",
            *TINY_RUN,
            "train.num_generations=4",
        ]
    )
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["steps"] == 2
    # every group was flat (random model): both ranks resampled the split groups in step
    assert summary["resample"]["resampled_groups"] == summary["resample"]["groups"] == 2


def test_synth_output_passes_loader_and_masks_match(tmp_path) -> None:
    from differad_edge.train.cli import main

    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "--count", "8", "--seed", "1", "--size", "64"]) == 0
    pf = read_pairs(out / "pairs.jsonl")
    assert pf.errors == []
    assert len(pf.pairs) == 8
    assert sum(p.box.is_zero for p in pf.pairs) == 2  # 25 % normals
    for p in pf.pairs:
        assert p.mask is not None
        assert box_from_mask(load_image(p.mask)[..., 0] > 0) == p.box


@pytest.mark.slow
def test_qlora_nf4_one_step_merges_into_plain_weights(tiny_model_dir, synth_pairs, reward_module_dir, tmp_path) -> None:
    out = tmp_path / "qlora"
    _run(
        [
            str(BIN / "differad-train"),
            "grpo",
            f"model.path={tiny_model_dir}",
            f"data.pairs={synth_pairs}",
            f"output_dir={out}",
            "model.quant=nf4",
            "data.limit=2",
            "reward.extra=[train_test_rewards:text_hash_reward]",
            "--merge-lora",
            *TINY_RUN,
            "train.max_steps=1",
        ],
        reward_module_dir,
    )
    assert "quantization_config" not in json.loads((out / "config.json").read_text())  # merged into fp weights
    assert any("language_model" in k for k in _changed(tiny_model_dir, out))
