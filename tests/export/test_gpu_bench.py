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


@pytest.mark.slow
def test_offline_machine_without_the_package_gets_it_installed_beside_not_over(tmp_path: Path) -> None:
    """This workplace's GPU machines: a python3 that holds the libraries but not this package, no package
    index. The script installs this checkout offline into GPU_SITE (nothing installed is changed) and
    the dry run then checks every step with it."""
    import site
    import venv

    env_dir = tmp_path / "py"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    found = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    # the project's libraries, seen through a plain path: the editable install's finder is not loaded
    (Path(found.stdout.strip()) / "libs.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    lacks = subprocess.run([str(py), "-c", "import differad_edge"], cwd="/", capture_output=True, check=False)
    assert lacks.returncode != 0
    site_dir = tmp_path / "site"
    out = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=900,
        env={
            **os.environ,
            "PYTHON": str(py),
            "GPU_SITE": str(site_dir),
            "GPU_WORK": str(tmp_path / "work"),
            "PIP_NO_INDEX": "1",
        },
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"installing this checkout into {site_dir}" in out.stderr
    assert (site_dir / "differad_edge" / "export" / "exporter.py").is_file()
    assert "| onnx int4 cuda + trt vision | on |" in out.stdout
    assert "grammar on: 1/1 identical" in out.stdout
