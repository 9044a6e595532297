"""Bundles exported once per session from the tiny model (each export takes a few seconds on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest


def export_bundle(model: Path, out: Path, quant: str, **options) -> Path:
    from differad_edge.export import make_config, run_export

    cfg = make_config(model=model, out=out, quant=quant, verify_count=3, max_pixels=256 * 256, **options)
    return run_export(cfg, log=lambda _m: None).bundle


@pytest.fixture(scope="session")
def fp32_bundle(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_bundle(tiny_model_dir, tmp_path_factory.mktemp("bundles") / "fp32", "fp32")


@pytest.fixture(scope="session")
def int4_bundle(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # a random tiny model's greedy text is fragile under int4: agreement is recorded, not enforced
    return export_bundle(tiny_model_dir, tmp_path_factory.mktemp("bundles") / "int4", "int4", fail_on_verify=False)
