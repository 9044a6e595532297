"""``--engine-option`` / ``--engine-config`` for the model engines: they map onto ``VLMConfig`` and
``OnnxConfig`` as they do onto ``GoldenConfig`` (typos get the closest name, bad values are named,
all before a model loads), and a typed option reaches the running engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run_cli


def _one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("differad: error:")
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    ("engine", "extra", "needles"),
    [
        ("vlm", ["--engine-option", "max_batchh=2"], ["did you mean 'max_batch'"]),
        ("onnx", ["--engine-option", "threds=2"], ["did you mean 'threads'"]),
        ("vlm", ["--engine-option", "max_batch=0"], ["max_batch=0", "[1, 64]"]),
        ("vlm", ["--engine-option", "kv_cache=paged"], ["kv_cache='paged'", "dynamic, static"]),
        ("onnx", ["--engine-option", "max_new_tokens=-3"], ["max_new_tokens=-3"]),
        ("vlm", ["--dtype", "bf16", "--engine-option", "dtype=fp16"], ["dtype", "keep one"]),
        ("onnx", ["--dtype", "bf16"], ["'onnx'", "--dtype"]),  # a flag whose option the config lacks
    ],
)
def test_model_engine_options_are_checked_before_anything_loads(
    pair_images: dict[str, Path], tmp_path: Path, engine: str, extra: list[str], needles: list[str]
) -> None:
    empty = tmp_path / "not-loaded"  # would fail to load: every error here comes before that
    empty.mkdir()
    proc = run_cli(
        "inspect",
        "-r",
        pair_images["reference"],
        "-t",
        pair_images["good"],
        "--engine",
        engine,
        "--model",
        empty,
        *extra,
    )
    _one_line_error(proc, *needles)


def test_engine_config_file_for_the_vlm_engine(pair_images: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "not-loaded"
    empty.mkdir()
    cfg = tmp_path / "vlm.yaml"
    cfg.write_text("max_batch: 2\nkv_cache: paged\n")
    proc = run_cli(
        "inspect", "-r", pair_images["reference"], "-t", pair_images["good"], "--engine", "vlm", "--model", empty,
        "--engine-config", cfg,
    )  # fmt: skip
    _one_line_error(proc, "kv_cache='paged'")


@pytest.mark.slow
def test_a_typed_option_reaches_the_vlm_engine(tiny_model_dir: Path, pair_images: dict[str, Path]) -> None:
    """The answer budget set as ``--engine-option`` bounds the raw answer: greedy decoding of 1 token
    is the start of the 6-token answer (the grammar off, so the model's own tokens are kept)."""
    texts = []
    for tokens in (1, 6):
        proc = run_cli(
            "inspect", "-r", pair_images["reference"], "-t", pair_images["good"], "--json", "--no-align",
            "--no-quality-check", "--engine", "vlm", "--model", tiny_model_dir,
            "--engine-option", f"max_new_tokens={tokens}", "--engine-option", "grammar=false",
        )  # fmt: skip
        assert proc.returncode in (0, 1, 3), proc.stderr
        texts.append(json.loads(proc.stdout.splitlines()[0])["text"])
    short, long = texts
    assert short
    assert len(long) > len(short)
    assert long.startswith(short)
