"""Shared fixtures. Model-backed fixtures are session-scoped: the tiny checkpoint is generated once
by the project's own factory (no hub, no committed binaries)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep any DDS traffic of the suite on this machine and off other users' domains.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))  # above 101 collides with ephemeral ports


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny Qwen3-VL checkpoint written by ``differad dev make-model``'s factory."""
    from differad_edge.vlm.factory import make_model

    return make_model(tmp_path_factory.mktemp("tiny-qwen3vl"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def onnx_bundle(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An fp32 ONNX bundle of the tiny model (the export area's own exporter, a few seconds), shared by
    the engine-protocol and ROS tests."""
    from differad_edge.export import make_config, run_export

    cfg = make_config(
        model=tiny_model_dir,
        out=tmp_path_factory.mktemp("onnx-bundle") / "fp32",
        quant="fp32",
        verify_count=1,
        max_pixels=256 * 256,
    )
    return run_export(cfg, log=lambda _m: None).bundle


@pytest.fixture
def export_check_refuses(capsys: pytest.CaptureFixture[str]):
    """``check(ROOT) -> (stdout, error line)``: ``differad-export --check ROOT`` refuses the bundle with
    exit 2 and exactly one stderr line (what the export and fuzz tests of a damaged bundle both demand)."""
    from differad_edge.export.cli import main as export_main

    def check(root: Path) -> tuple[str, str]:
        assert export_main(["--check", str(root)]) == 2
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        return out, lines[0]

    return check


@pytest.fixture(scope="session")
def memorized_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3-VL that has memorized 16 synthetic pairs (``differad dev make-model --memorized``, ~1 min
    on a CPU, once per test session): real, image-dependent answers on ``DIR/memorized_pairs/pairs.jsonl``
    only (see ``differad_edge.train.fixture`` for its limits)."""
    from differad_edge.train.fixture import make_memorized_model

    return make_memorized_model(tmp_path_factory.mktemp("memorized") / "model")
