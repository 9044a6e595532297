"""Bad input: one ``differad: error:`` line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import run_cli


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("differad: error: ")
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_reference(pair_images: dict[str, Path], tmp_path: Path) -> None:
    proc = run_cli("inspect", "-r", tmp_path / "nope.png", "-t", pair_images["good"], "--json")
    assert_one_line_error(proc, "nope.png", "not found")
    assert proc.stdout == ""


def test_corrupt_target(pair_images: dict[str, Path], tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    proc = run_cli("inspect", "-r", pair_images["reference"], "-t", corrupt, "--out", tmp_path / "out")
    assert_one_line_error(proc, "corrupt.png")


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--engine", "nonsense"], ["'nonsense'", "golden"]),  # unknown engine lists the known ones
        (["--engine", "vlm"], ["--model"]),  # a weights engine without weights
        (["--engine", "vlm", "--model", "MISSING"], ["missing-model", "not found"]),
        (["--engine", "onnx", "--model", "MISSING"], ["missing-model", "not found"]),
        (["--dtype", "bf16"], ["golden", "--dtype"]),  # an option the engine does not take
        (["--motion", "spiral"], ["spiral"]),  # argparse usage errors are one line too
    ],
)
def test_bad_engine_options(pair_images: dict[str, Path], tmp_path: Path, extra: list[str], needles: list[str]) -> None:
    extra = [str(tmp_path / "missing-model") if a == "MISSING" else a for a in extra]
    proc = run_cli("inspect", "-r", pair_images["reference"], "-t", pair_images["good"], *extra)
    assert_one_line_error(proc, *needles)


def test_unreadable_model_folder(pair_images: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "not-a-model"
    model.mkdir()
    (model / "config.json").write_text("{ broken")
    proc = run_cli(
        "inspect", "-r", pair_images["reference"], "-t", pair_images["good"], "--engine", "vlm", "--model", model
    )
    assert_one_line_error(proc, "not-a-model")


def test_missing_pairs_file(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("eval", "--data", tmp_path / "pairs.jsonl"), "pairs.jsonl")


def test_eval_with_nothing_scorable(tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text("{not json\n")
    out = tmp_path / "out"
    assert_one_line_error(run_cli("eval", "--data", data, "--out", out), "no sample", "line 1")
    assert not out.exists()


def test_usage_errors(pair_images: dict[str, Path]) -> None:
    assert_one_line_error(run_cli(), "required")
    assert_one_line_error(run_cli("inspect", "-t", pair_images["good"]), "-r R")
    assert_one_line_error(
        run_cli("inspect", "-r", pair_images["reference"], "-t", pair_images["good"], "--frobnicate"), "--frobnicate"
    )


def test_predictions_eval_refuses_engine_flags(small_dataset: Path, tmp_path: Path) -> None:
    proc = run_cli("eval", "--data", small_dataset, "--predictions", tmp_path / "p.jsonl", "--engine", "vlm")
    assert_one_line_error(proc, "--predictions", "--engine")


def test_an_out_path_that_is_a_file_fails_before_any_work(
    pair_images: dict[str, Path], small_dataset: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    runs = {
        "inspect": ("inspect", "-r", pair_images["reference"], "-t", pair_images["defect"], "--out", blocker),
        "eval": ("eval", "--data", small_dataset, "--no-progress", "--out", blocker / "sub"),
        "demo": ("demo", "--no-progress", "--out", blocker),
    }
    for name, argv in runs.items():
        proc = run_cli(*argv)
        assert_one_line_error(proc, "exists and is not a folder")
        assert proc.stdout == "", (name, proc.stdout)  # refused up front: no detection or table was computed
    assert blocker.read_text() == "not a folder"
