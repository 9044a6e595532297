"""``bench/gpu.sh``: without a GPU it says so and exits 0; ``--dry-run`` runs every step (imports and
arguments of each config: vlm dynamic / static / compiled, nf4, the ONNX int4 export and its rows, the
CPU-vs-GPU token check) on the CPU with the tiny model and prints the table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu.sh"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable}


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine would start measuring")
def test_without_a_gpu_it_says_so_and_exits_0() -> None:
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120, env=_env(), check=False)
    assert out.returncode == 0, out.stderr
    assert "no CUDA GPU" in out.stderr
    assert "nothing measured" in out.stderr


def test_bad_argument_is_refused() -> None:
    out = subprocess.run(
        ["bash", str(SCRIPT), "--fast"], capture_output=True, text=True, timeout=60, env=_env(), check=False
    )
    assert out.returncode == 2
    assert "unknown argument --fast" in out.stderr


@pytest.mark.slow
def test_dry_run_checks_every_step_on_the_cpu(tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**_env(), "GPU_WORK": str(tmp_path)},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    table = out.stdout
    assert "| config | grammar | p50 ms/pair |" in table
    assert "(cpu (dry run))" in table
    for config in (
        "vlm bf16 dynamic",
        "vlm bf16 static",
        "vlm bf16 compiled",
        "vlm nf4",
        "onnx int4 cuda + trt vision",
    ):
        rows = [line for line in table.splitlines() if line.startswith(f"| {config} |")]
        assert len(rows) == 2, config
        for row in rows:
            assert "failed" not in row, row
            assert "budget" not in row, row
    assert "would install tensorrt" in out.stderr or "import tensorrt" in out.stderr or "tensorrt" in table
    assert "grammar on: 1/1 identical; grammar off: 1/1 identical" in table
    on_rows = [r for r in table.splitlines() if " | on | " in r and "compiled" not in r]
    assert all(" 1/1 |" in r for r in on_rows)  # the grammar makes every answer valid, random weights or not
