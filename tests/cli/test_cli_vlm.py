"""The language-model path of the CLI on a tiny random Qwen3-VL written by ``differad dev make-model``.

A random model answers nonsense; what is checked is the plumbing: the raw text reaches the JSON,
garbage becomes an invalid detection (never a crash), and the engine flags reach the engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-model") / "tiny"
    proc = run_cli("dev", "make-model", out, "--size", "tiny", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == out
    return out


def test_make_model_writes_a_checkpoint_and_refuses_to_overwrite(cli_model: Path) -> None:
    assert (cli_model / "config.json").is_file()
    assert (cli_model / "model.safetensors").is_file()
    again = run_cli("dev", "make-model", cli_model, "--size", "tiny")
    assert again.returncode == 2
    assert len(again.stderr.strip().splitlines()) == 1
    assert "not empty" in again.stderr
    assert "Traceback" not in again.stderr


def _inspect_vlm(model: Path, pair_images: dict[str, Path]) -> list[str | Path]:
    """``differad inspect`` of the defect and the good photo by the vlm engine, JSON lines, 8 new tokens."""
    ref, defect, good = pair_images["reference"], pair_images["defect"], pair_images["good"]
    return [
        "inspect",
        "-r",
        ref,
        "-t",
        defect,
        good,
        "--engine",
        "vlm",
        "--model",
        model,
        "--json",
        "--max-new-tokens",
        "8",
    ]


def test_inspect_vlm_json_carries_the_raw_text(cli_model: Path, pair_images: dict[str, Path]) -> None:
    proc = run_cli(*_inspect_vlm(cli_model, pair_images))
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 2
    # a random model's garbage is NOT_INSPECTED (never OK), and the exit status says so
    assert proc.returncode == (3 if any(r["verdict"] == "NOT_INSPECTED" for r in rows) else 0), proc.stderr
    for row in rows:
        assert row["engine"] == "vlm"
        assert isinstance(row["text"], str)
        if not row["valid"]:
            assert row["verdict"] == "NOT_INSPECTED"
            assert row["reason"] == "invalid_answer"
            assert row["message"]
        assert row["box"] is None or all(isinstance(v, int) for v in row["box"])
        assert {"preprocess", "prefill", "decode"} <= {k.removeprefix("engine.") for k in row["timings_ms"]}


def test_inspect_vlm_static_kv_cache_answers_like_the_dynamic_one(
    cli_model: Path, pair_images: dict[str, Path]
) -> None:
    args = _inspect_vlm(cli_model, pair_images)
    dynamic, static = run_cli(*args), run_cli(*args, "--kv-cache", "static")
    assert dynamic.returncode in (0, 3), dynamic.stderr  # 3: the random model's garbage is NOT_INSPECTED
    assert static.returncode == dynamic.returncode, static.stderr
    texts = [[json.loads(line)["text"] for line in p.stdout.splitlines()] for p in (dynamic, static)]
    assert texts[0] == texts[1]
    assert len(texts[0]) == 2


def test_eval_vlm_passes_engine_options(cli_model: Path, small_dataset: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "eval",
        "--data",
        small_dataset,
        "--engine",
        "vlm",
        "--model",
        cli_model,
        "--limit",
        "3",
        "--max-new-tokens",
        "8",
        "--no-reference-cache",
        "--kv-cache",
        "static",
        "--out",
        tmp_path / "out",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    assert "scored 3 samples" in proc.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["metrics"]["overall"]["n"] == 3
    engine = report["engine"]
    assert engine["engine"] == "vlm"
    assert engine["reference_cache"] is False
    assert engine["max_new_tokens"] == 8
    assert engine["kv_cache"] == "static"
