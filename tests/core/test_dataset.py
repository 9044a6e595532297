"""dataset: the pairs and predictions JSONL formats (issue 2, section 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from differad_edge.boxes import ZERO_BOX, Box
from differad_edge.dataset import (
    Pair,
    Prediction,
    image_file_size,
    pair_box_model_scale,
    read_pairs,
    read_predictions,
    to_records,
    write_pairs,
)
from differad_edge.errors import DatasetError, ImageError
from differad_edge.images import save_image
from differad_edge.metrics import evaluate


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Two real 400x200 PNGs (non-square) under tmp/imgs."""
    d = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for name in ("ref.png", "tgt.png", "mask.png"):
        save_image(d / name, rng.integers(0, 255, (200, 400, 3), dtype=np.uint8))
    return d


def _write(path: Path, lines: list[str | dict]) -> Path:
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines), encoding="utf-8")
    return path


def _line(**kw: object) -> dict:
    base = {"reference": "imgs/ref.png", "target": "imgs/tgt.png", "box": [10, 20, 110, 60], "category": "pcb"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def test_read_resolves_paths_and_defaults(tmp_path: Path, images: Path) -> None:
    f = _write(tmp_path / "pairs.jsonl", [_line(id="a", subset="s1", mask="imgs/mask.png"), _line(box=[0, 0, 0, 0])])
    pf = read_pairs(f)
    assert pf.errors == []
    assert pf.skipped == 0
    assert len(pf.pairs) == 2
    a, b = pf.pairs
    assert a.reference == images / "ref.png"
    assert a.target.is_file()
    assert a.mask == images / "mask.png"
    assert (a.id, a.category, a.subset, a.box) == ("a", "pcb", "s1", Box(10, 20, 110, 60))
    assert b.id == "imgs/tgt.png"
    assert b.subset == "default"
    assert b.mask is None
    assert b.is_normal


def test_bad_lines_are_skipped_with_a_reason_each(tmp_path: Path, images: Path) -> None:
    lines = [
        _line(id="ok"),
        "{not json",  # 2
        "[1, 2, 3]",  # 3: not an object
        _line(id="x", category=...),  # 4: missing key
        _line(id="y", box=[1, 2, 3]),  # 5: three numbers
        _line(id="z", box=[50, 50, 40, 60]),  # 6: degenerate
        _line(id="w", box=[-1, 0, 5, 5]),  # 7: negative
        _line(id="v", box=["a", 0, 5, 5]),  # 8: not numbers
        _line(id="ok"),  # 9: duplicate id
        _line(id="m", target="imgs/missing.png"),  # 10: missing file
        _line(id="n", category=""),  # 11: empty category
        "",  # blank lines and comments are not errors
        "# a comment",
        _line(id="ok2", box=[0, 0, 0, 0]),
    ]
    pf = read_pairs(_write(tmp_path / "p.jsonl", lines))
    assert [p.id for p in pf.pairs] == ["ok", "ok2"]
    assert pf.skipped == 10
    expected = {
        2: "not valid JSON",
        3: "JSON object",
        4: "category",
        5: "[x1, y1, x2, y2]",
        6: "degenerate",
        7: "negative",
        8: "numbers",
        9: "duplicate id",
        10: "target file not found",
        11: "category",
    }
    for err, (no, part) in zip(pf.errors, expected.items(), strict=True):
        assert err.startswith(f"line {no}:"), err
        assert part in err, err


def test_check_files_false_keeps_pairs_with_missing_images(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.jsonl", [_line(id="a")])
    assert read_pairs(f).skipped == 1
    assert len(read_pairs(f, check_files=False).pairs) == 1


def test_missing_or_unreadable_file_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        read_pairs(tmp_path / "nope.jsonl")
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"id": "\xff"}\n')
    assert "not UTF-8" in read_pairs(bad).errors[0]  # one bad line, not a rejected file (issue 13)
    with pytest.raises(DatasetError):
        read_predictions(tmp_path / "nope.jsonl")


def test_write_then_read_round_trip_with_relative_paths(tmp_path: Path, images: Path) -> None:
    pairs = [
        Pair("a", images / "ref.png", images / "tgt.png", Box(1, 2, 30, 40), "pcb", "s", images / "mask.png"),
        Pair("b", images / "ref.png", images / "tgt.png", ZERO_BOX, "disc"),
    ]
    out = write_pairs(tmp_path / "deep" / "er" / "pairs.jsonl", pairs)
    first = json.loads(out.read_text().splitlines()[0])
    assert first["reference"] == "../../imgs/ref.png"
    assert first["box"] == [1, 2, 30, 40]
    back = read_pairs(out)
    assert back.errors == []
    assert [(p.id, p.box, p.category, p.subset) for p in back.pairs] == [
        (p.id, p.box, p.category, p.subset) for p in pairs
    ]
    assert [p.target.resolve() for p in back.pairs] == [p.target.resolve() for p in pairs]
    assert [f.name for f in out.parent.iterdir()] == ["pairs.jsonl"]  # atomic: no temp file left


def test_read_predictions_text_and_box(tmp_path: Path) -> None:
    lines = [
        {"id": "t1", "text": "<think>x</think><answer>(100,200),(300,400)</answer>"},
        {"id": "t2", "text": "I see nothing wrong."},
        {"id": "t3", "text": "<answer>(0,0),(0,0)</answer>"},
        {"id": "b1", "box": [5, 6, 50, 60]},
        {"id": "b2", "box": None},
        {"id": "b3", "box": [0, 0, 0, 0], "valid": False, "reason": "timeout"},
        {"id": 7, "box": [1, 1, 2, 2], "text": "<answer>(9,9),(10,10)</answer>"},  # box wins over text
        {"text": "no id"},
        {"id": "x", "box": [1, 2]},
        {"id": "y"},
        {"id": "z", "text": 5},
        {"id": "t1", "box": [1, 1, 3, 3]},  # duplicate: later wins, reported
    ]
    preds = read_predictions(_write(tmp_path / "preds.jsonl", lines))
    assert preds["t1"] == Prediction(Box(1, 1, 3, 3), True, None, None, "pixel")
    assert preds["t2"].box is None
    assert not preds["t2"].valid
    assert preds["t2"].reason == "no box found"
    assert preds["t3"].box == ZERO_BOX
    assert preds["t3"].valid
    assert preds["t3"].space == "model"
    assert preds["b1"].box == Box(5, 6, 50, 60)
    assert preds["b1"].space == "pixel"
    assert preds["b2"].box is None
    assert preds["b2"].valid
    assert not preds["b3"].valid
    assert preds["b3"].reason == "timeout"
    assert preds["7"].box == Box(1, 1, 2, 2)
    assert len(preds.errors) == 5
    assert [e.split(":")[0] for e in preds.errors] == ["line 8", "line 9", "line 10", "line 11", "line 12"]


def test_model_scale_helpers_use_the_target_size(tmp_path: Path, images: Path) -> None:
    pair = Pair("a", images / "ref.png", images / "tgt.png", Box(40, 20, 200, 100), "pcb")
    assert image_file_size(pair.target) == (400, 200)
    assert pair_box_model_scale(pair) == Box(100, 100, 500, 500)
    assert pair_box_model_scale(pair, size=(800, 400)) == Box(50, 50, 250, 250)
    pred = Prediction(Box(100, 100, 500, 500), True, space="model")
    assert pred.pixel_box(400, 200) == Box(40, 20, 200, 100)
    with pytest.raises(ImageError):
        image_file_size(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(ImageError):
        image_file_size(bad)


def test_to_records_maps_model_boxes_and_scores_missing_as_invalid(tmp_path: Path, images: Path) -> None:
    gt = Box(40, 20, 200, 100)
    pairs = [Pair(i, images / "ref.png", images / "tgt.png", gt, "pcb") for i in ("a", "b", "c")]
    preds = {
        "a": Prediction(Box(100, 100, 500, 500), True, "<answer>(100,100),(500,500)</answer>", space="model"),
        "b": Prediction(gt, True),
    }
    records, missing = to_records(pairs, preds)
    assert missing == ["c"]
    assert records[0].pred == gt
    assert records[1].pred == gt
    assert not records[2].valid
    assert evaluate(records).overall.acc30 == pytest.approx(2 / 3)
