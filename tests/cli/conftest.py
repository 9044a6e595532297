"""CLI tests run the real ``differad`` command in a subprocess, as users and scripts do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from differad_edge.boxes import Box
from differad_edge.images import save_image

#: A clearly visible defect on the textured reference (exclusive right/bottom edges, target pixels).
DEFECT_BOX = Box(70, 40, 100, 64)


def run_cli(*args: str | os.PathLike, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DIFFERAD_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "differad_edge.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def textured_image(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth, structured RGB pattern (alignment needs texture; flat images align trivially)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    img = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(img, (5, 5), 0)
    return (img.astype(np.float32) * 0.6 + 50).astype(np.uint8)


@pytest.fixture(scope="session")
def pair_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """reference.png, a defective target (DEFECT_BOX painted), a good target (sensor noise only), and a
    defective target of a part that moved by (5, 3) px (DEFECT_BOX in *its* pixels)."""
    root = tmp_path_factory.mktemp("pair")
    ref = textured_image(160, 120, seed=1)
    rng = np.random.default_rng(2)
    good = np.clip(ref.astype(np.int16) + rng.normal(0, 2, ref.shape).round().astype(np.int16), 0, 255)
    bad = good.astype(np.uint8).copy()
    x1, y1, x2, y2 = DEFECT_BOX.as_int_list()
    bad[y1:y2, x1:x2] = (230, 20, 20)
    moved = cv2.warpAffine(
        good.astype(np.uint8), np.float32([[1, 0, 5], [0, 1, 3]]), (160, 120), borderMode=cv2.BORDER_REPLICATE
    )
    moved[y1:y2, x1:x2] = (230, 20, 20)
    paths = {name: root / f"{name}.png" for name in ("reference", "defect", "good", "moved")}
    save_image(paths["reference"], ref)
    save_image(paths["defect"], bad)
    save_image(paths["good"], good.astype(np.uint8))
    save_image(paths["moved"], moved)
    return paths


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic pairs.jsonl written by the project's own generator (Algorithm 1)."""
    from differad_edge.synth import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synth"), count=12, seed=0, size=128, progress=False)
