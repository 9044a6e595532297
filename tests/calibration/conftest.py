"""Fixtures of the calibration tests: capture folders with good and deliberately bad frames, a store,
and a capture session. Scenes come from ``calib_helpers.py`` (OpenCV/numpy, fixed seeds)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from calib_helpers import PRODUCT, part_scene, write_capture_folder, write_defects

from differad_edge.store import ReferenceStore


@pytest.fixture(scope="session")
def base_scene() -> np.ndarray:
    return part_scene(0)


@pytest.fixture
def capture_dir(tmp_path: Path, base_scene: np.ndarray) -> Path:
    return write_capture_folder(tmp_path / "camera", base_scene)


@pytest.fixture
def defects_dir(tmp_path: Path, base_scene: np.ndarray) -> Path:
    return write_defects(tmp_path / "defects", base_scene)


@pytest.fixture
def store(tmp_path: Path) -> ReferenceStore:
    return ReferenceStore(tmp_path / "store")


@pytest.fixture
def session(capture_dir: Path, tmp_path: Path):
    from differad_edge.calibration.session import capture

    return capture(PRODUCT, str(capture_dir), 100, tmp_path / "session")


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> str:
    """validate / promote / rollback name the operator (audit trail); tests act as this one."""
    monkeypatch.setenv("DIFFERAD_OPERATOR", "test-engineer")
    return "test-engineer"
