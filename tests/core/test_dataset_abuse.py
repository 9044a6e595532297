"""Issue 13 items 7 and 16: one bad JSONL line is counted and skipped, never fatal; GT boxes outside
the target image are reported; ``parse_answer`` never raises."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from differad_edge.dataset import read_pairs, read_predictions
from differad_edge.parsing import parse_answer

GOOD = {"id": "ok", "reference": "r.png", "target": "r.png", "box": [0, 0, 0, 0], "category": "c"}
HUGE = b"9" * 400
BAD_PAIR_LINES = [
    b'{"id":"b","reference":"r.png","target":"r.png","box":[' + HUGE + b',1,2,3],"category":"c"}',
    b"[" * 1000 + b"]" * 1000,
    b'{"id":"u","reference":"r.png","target":"r.png","box":[0,0,0,0],"category":"\xff"}',
    b'{"id":"e","reference":"r.png","target":"r.png","box":[' + b"9" * 5000 + b',1,2,3],"category":"c"}',
    b'{"id":"n","reference":"r.png","target":"r.png","box":[1e999,1,2,3],"category":"c"}',
    b'{"id":"x","reference":"r.png","target":"r.png","box":[10,10,100,20],"category":"c"}',  # outside 64x64
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    cv2.imwrite(str(tmp_path / "r.png"), np.zeros((64, 64, 3), np.uint8))
    return tmp_path


@pytest.mark.parametrize("bad", BAD_PAIR_LINES)
def test_one_bad_pairs_line_is_skipped_and_reported(folder: Path, bad: bytes) -> None:
    path = folder / "pairs.jsonl"
    path.write_bytes(
        json.dumps(GOOD).encode() + b"\n" + bad + b"\n" + json.dumps({**GOOD, "id": "ok2"}).encode() + b"\n"
    )
    pf = read_pairs(path)
    assert [p.id for p in pf.pairs] == ["ok", "ok2"]
    assert pf.skipped == 1
    assert pf.errors[0].startswith("line 2:")
    assert len(pf.errors[0]) < 300  # a 400-digit number is not echoed in full


def test_a_box_outside_the_image_names_the_size(folder: Path) -> None:
    path = folder / "pairs.jsonl"
    path.write_bytes(BAD_PAIR_LINES[-1] + b"\n")
    assert "outside the 64x64 target" in read_pairs(path).errors[0]
    assert read_pairs(path, check_files=False).skipped == 0  # without the files nothing can be judged


@pytest.mark.parametrize(
    "bad",
    [
        b'{"id":"b","box":[' + HUGE + b",1,2,3]}",
        b'{"id":"t","box":' + b"[" * 1000 + b"]" * 1000 + b"}",
        b"\xff\xfe",
        b'{"id":"v","box":[1,2,3,4],"valid":"yes"}',
    ],
)
def test_one_bad_prediction_line_is_skipped_and_reported(folder: Path, bad: bytes) -> None:
    path = folder / "pred.jsonl"
    path.write_bytes(b'{"id":"a","box":[1,2,3,4]}\n' + bad + b'\n{"id":"c","box":null}\n')
    preds = read_predictions(path)
    assert sorted(preds) == ["a", "c"]
    assert len(preds.errors) == 1
    assert preds.errors[0].startswith("line 2:")


@pytest.mark.parametrize(
    "text",
    ["<answer>[" + "9" * 309 + ",1,2,3]</answer>", "[" + "9" * 400 + ", 1, 2, 3]", "(" + "9" * 1000 + ",1),(2,3)"],
)
def test_parse_answer_never_raises_on_huge_numbers(text: str, folder: Path) -> None:
    parsed = parse_answer(text)
    assert not parsed.valid
    assert parsed.box is None
    path = folder / "pred.jsonl"
    path.write_text(json.dumps({"id": "a", "text": text}) + "\n")
    preds = read_predictions(path)
    assert not preds["a"].valid
    assert preds.errors == []
