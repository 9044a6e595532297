"""Helpers of the calibration tests: synthetic inspection scenes (a textured part on a plain
background, made with OpenCV/numpy and fixed seeds), capture folders built from them, and the one way
the tests call ``differad-calibrate`` in-process."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from differad_edge.images import save_image

PRODUCT = "pump-a"
DEFECT_BOXES = [(60, 50, 80, 66), (100, 80, 124, 100), (120, 40, 140, 60), (50, 90, 66, 110)]
SIZE = (192, 160)  # (width, height)
PART = (40, 30, 152, 130)  # x1, y1, x2, y2 of the part on the background


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """``differad-calibrate ARGV`` in this process: (exit code, stdout, stderr)."""
    from differad_edge.calibration.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def on_product(capsys: pytest.CaptureFixture, command: str, store: str, *argv: str) -> tuple[int, str, str]:
    """``differad-calibrate COMMAND --store STORE --product PRODUCT ARGV``, the form most tests use."""
    return run(capsys, command, "--store", store, "--product", PRODUCT, *argv)


def part_scene(seed: int = 0, size: tuple[int, int] = SIZE) -> np.ndarray:
    """The defect-free station: gray background, a textured part (blobs, lines, text) in its fixture."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.full((h, w, 3), (70, 80, 90), np.uint8)
    x1, y1, x2, y2 = PART
    cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), (150, 140, 120), -1)
    for _ in range(40):
        c = tuple(int(v) for v in rng.integers(60, 230, 3))
        cx, cy = int(rng.integers(x1 + 5, x2 - 5)), int(rng.integers(y1 + 5, y2 - 5))
        cv2.circle(img, (cx, cy), int(rng.integers(2, 9)), c, -1)
    for _ in range(12):
        c = tuple(int(v) for v in rng.integers(30, 200, 3))
        p = (int(rng.integers(x1, x2)), int(rng.integers(y1, y2)))
        q = (int(rng.integers(x1, x2)), int(rng.integers(y1, y2)))
        cv2.line(img, p, q, c, 1)
    cv2.putText(img, "DX-7", (x1 + 10, y2 - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (20, 20, 20), 2)
    return img


def good_frame(base: np.ndarray, seed: int, noise: float = 2.0) -> np.ndarray:
    """A new good part: sensor noise and a slight global brightness change."""
    rng = np.random.default_rng(1000 + seed)
    img = base.astype(np.float32) * float(rng.uniform(0.98, 1.02)) + rng.normal(0, noise, base.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def blurred(img: np.ndarray, sigma: float = 2.5) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def over_exposed(img: np.ndarray, gain: float = 2.2) -> np.ndarray:
    return np.clip(img.astype(np.float32) * gain + 40, 0, 255).astype(np.uint8)


def shifted(img: np.ndarray, dx: float = 20.0, dy: float = 14.0) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def empty_station(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    x1, y1, x2, y2 = PART
    out[y1:y2, x1:x2] = img[0, 0]
    return out


def with_defect(img: np.ndarray, box: tuple[int, int, int, int], color=(10, 10, 10)) -> np.ndarray:
    """Paint a dark scratch-like blob filling ``box`` (x1, y1, x2, y2, exclusive)."""
    out = img.copy()
    x1, y1, x2, y2 = box
    cv2.ellipse(out, (((x1 + x2) / 2, (y1 + y2) / 2), (x2 - x1, y2 - y1), 0), color, -1)
    return out


def write_capture_folder(folder: Path, base: np.ndarray, good: int = 16, bad: bool = True) -> Path:
    """``good`` good frames plus one blurred, over-exposed, shifted and empty-station frame."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(good):
        save_image(folder / f"f{i:03d}.png", good_frame(base, i))
    if bad:
        save_image(folder / "f100_blurred.png", blurred(good_frame(base, 50)))
        save_image(folder / "f101_overexposed.png", over_exposed(good_frame(base, 51)))
        save_image(folder / "f102_shifted.png", shifted(good_frame(base, 52)))
        save_image(folder / "f103_empty.png", empty_station(good_frame(base, 53)))
    return folder


def write_defects(folder: Path, base: np.ndarray) -> Path:
    """Known-defect frames with ``labels.json`` (boxes in frame pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i, box in enumerate(DEFECT_BOXES):
        save_image(folder / f"d{i}.png", with_defect(good_frame(base, 300 + i), box))
        labels[f"d{i}.png"] = list(box)
    (folder / "labels.json").write_text(json.dumps(labels))
    return folder
