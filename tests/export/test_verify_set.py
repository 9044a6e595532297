"""Verify sets: pairs.jsonl files and deterministic synthetic pairs (with and without differad_edge.synth)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from differad_edge.export.verify_set import load_pairs_file, synthetic_pairs

from differad_edge.errors import DatasetError
from differad_edge.images import save_image


def test_synthetic_pairs_are_deterministic_by_seed():
    a, b, c = synthetic_pairs(4, 64, seed=3), synthetic_pairs(4, 64, seed=3), synthetic_pairs(4, 64, seed=4)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))
    assert all(r.shape == t.shape == (64, 64, 3) and r.dtype == np.uint8 for r, t in a)


def test_fallback_generator_without_synth(monkeypatch):
    monkeypatch.setitem(sys.modules, "differad_edge.synth", None)  # as if core-data's synth were not installed
    pairs = synthetic_pairs(8, 64, seed=0)
    changed = [bool((r != t).any()) for r, t in pairs]
    assert changed == [True, True, True, False] * 2  # every fourth pair is defect-free


def test_pairs_file_is_read_relative_to_itself(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(2)]
    save_image(tmp_path / "img" / "r.png", imgs[0])
    save_image(tmp_path / "img" / "t.png", imgs[1])
    line = {"id": "p0", "reference": "img/r.png", "target": "img/t.png", "box": [0, 0, 0, 0], "category": "c"}
    (tmp_path / "pairs.jsonl").write_text(json.dumps(line) + "\n")
    ((ref, tgt),) = load_pairs_file(tmp_path / "pairs.jsonl")
    assert np.array_equal(ref, imgs[0])
    assert np.array_equal(tgt, imgs[1])


def test_empty_or_missing_pairs_file_is_a_dataset_error(tmp_path):
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"reference": "r.png", "target": "t.png"}) + "\n")
    with pytest.raises(DatasetError, match="no usable pairs .*missing key"):
        load_pairs_file(tmp_path / "pairs.jsonl")
    with pytest.raises(DatasetError):
        load_pairs_file(tmp_path / "nope.jsonl")
