"""Baselines of the held-out diagnostics, the held-out split and the curves (no model)."""

from __future__ import annotations

import pytest
from differad_edge.train.data import split_pairs
from differad_edge.train.diagnostics import baselines, best_fixed_box
from differad_edge.train.jobs import plot_curves

from differad_edge.boxes import ZERO_BOX, Box
from differad_edge.dataset import read_pairs

B = Box(100, 100, 300, 300)


def test_best_fixed_box_and_baselines() -> None:
    assert best_fixed_box([ZERO_BOX, ZERO_BOX, ZERO_BOX, B]) == ZERO_BOX  # 75 % normals: the zero box wins
    assert best_fixed_box([B, B, Box(110, 100, 310, 300), ZERO_BOX]) == B  # the common defect place wins
    base = baselines([B, B, ZERO_BOX], [B, ZERO_BOX, Box(600, 600, 700, 700), ZERO_BOX])
    assert base["diag/zero_acc30"] == 0.5
    assert base["diag/zero_f1"] == 0.0
    assert base["diag/fixed_acc30"] == 0.25  # B hits the first pair, misses both normals
    assert base["diag/fixed_miou"] == pytest.approx(0.25)


def test_split_pairs_is_seeded_and_respects_min_train(synth_pairs) -> None:
    pairs = read_pairs(synth_pairs).pairs  # 8 pairs
    assert split_pairs(pairs, 0.25, min_train=8) == (pairs, [])  # too few to hold any out
    train, held = split_pairs(pairs, 0.25, min_train=4, seed=1)
    assert len(held) == 2
    assert len(train) == 6
    assert not {p.id for p in train} & {p.id for p in held}
    assert split_pairs(pairs, 0.25, min_train=4, seed=1) == (train, held)
    assert split_pairs(pairs, 0.0, min_train=1) == (pairs, [])


def test_curves_show_diagnostics_and_baselines(tmp_path) -> None:
    rows = [
        {
            "step": s,
            "loss": 5.0 - s,
            "diag/acc30": 0.1 * s,
            "diag/miou": 0.05 * s,
            "diag/f1": 0.0,
            "diag/valid_rate": 1.0,
            "diag/zero_acc30": 0.25,
            "diag/fixed_acc30": 0.3,
            "diag/zero_miou": 0.25,
            "diag/fixed_miou": 0.2,
            "diag/zero_f1": 0.0,
            "diag/fixed_f1": 0.1,
            "diag/loss_real": 1.0,
            "diag/loss_shuffled": 1.0 + s,
        }
        for s in range(3)
    ]
    only_loss = plot_curves([{"step": 1, "loss": 1.0}], tmp_path / "a.png")
    full = plot_curves(rows, tmp_path / "b.png")
    assert only_loss is not None
    assert full is not None
    from PIL import Image

    assert Image.open(full).size[1] > 4 * Image.open(only_loss).size[1]  # 6 panels vs 1
