"""Hostile datasets, predictions, defect labels, care masks and capture sessions.

JSONL: a bad line is counted and skipped (``errors``), never fatal; the good lines are all kept.
Labels / masks / sessions: one ``CalibrationError``. ``differad eval``: exit 0 with the skipped lines
reported, or one error line and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from _hostile import NASTY_FILES, dumps, json_values
from hypothesis import given
from hypothesis import strategies as st

from differad_edge.dataset import read_pairs, read_predictions
from differad_edge.errors import CalibrationError, DifferadError

GOOD_PAIR = {"reference": "r.png", "target": "r.png", "box": [0, 0, 0, 0], "category": "c"}
bad_line = st.one_of(
    json_values.map(dumps),
    st.binary(max_size=64),
    st.sampled_from([ln.replace(b"\n", b" ") for ln in NASTY_FILES]),
    st.builds(
        lambda k, v: json.dumps({**GOOD_PAIR, "id": "bad", k: v}, default=str).encode(),
        st.sampled_from(["box", "category", "reference", "target", "id", "mask", "subset"]),
        json_values,
    ),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    cv2.imwrite(str(d / "r.png"), np.zeros((64, 64, 3), np.uint8))
    return d


@given(st.lists(st.tuples(st.booleans(), bad_line), min_size=1, max_size=12))
def test_pairs_files_of_good_and_bad_lines(folder: Path, count, lines) -> None:
    raw, good_ids = [], []
    for i, (good, bad) in enumerate(lines):
        if good:
            raw.append(json.dumps({**GOOD_PAIR, "id": f"g{i}"}).encode())
            good_ids.append(f"g{i}")
        else:
            raw.append(bad.replace(b"\n", b" ").replace(b"\r", b" "))
    path = folder / "pairs.jsonl"
    path.write_bytes(b"\n".join(raw) + b"\n")
    pf = read_pairs(path)
    ids = [p.id for p in pf.pairs]
    assert [i for i in ids if i.startswith("g")] == good_ids
    assert len(pf.pairs) + pf.skipped <= len(raw)
    count("jsonl", len(raw))


@given(st.lists(st.tuples(st.booleans(), bad_line), min_size=1, max_size=12))
def test_predictions_files_of_good_and_bad_lines(folder: Path, count, lines) -> None:
    raw, good_ids = [], []
    for i, (good, bad) in enumerate(lines):
        if good:
            raw.append(json.dumps({"id": f"g{i}", "box": [1, 2, 3, 4]}).encode())
            good_ids.append(f"g{i}")
        else:
            raw.append(bad.replace(b"\n", b" ").replace(b"\r", b" "))
    path = folder / "pred.jsonl"
    path.write_bytes(b"\n".join(raw) + b"\n")
    preds = read_predictions(path)
    assert all(g in preds for g in good_ids)
    count("jsonl", len(raw))


@given(
    st.text(max_size=400)
    | st.sampled_from(
        ["[" + "9" * 400 + ",1,2,3]", "(" + "9" * 309 + ",1),(2,3)", "<answer>" + "[" * 5000 + "</answer>"]
    )
)
def test_prediction_texts_never_raise(folder: Path, count, text: str) -> None:
    from differad_edge.parsing import parse_answer

    parsed = parse_answer(text)
    assert parsed.valid == (parsed.box is not None)
    count("jsonl")


@pytest.mark.parametrize(
    "content", NASTY_FILES + [b'{"id": "a", "box": [' + b"9" * 400 + b", 1, 2, 3]}"], ids=range(len(NASTY_FILES) + 1)
)
def test_differad_eval_with_hostile_predictions(folder: Path, tmp_path: Path, capsys, count, content: bytes) -> None:
    from differad_edge.cli.main import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({**GOOD_PAIR, "reference": str(folder / "r.png"), "target": str(folder / "r.png"), "id": "a"}) + "\n"
    )
    preds = tmp_path / "preds.jsonl"
    preds.write_bytes(content + b"\n" + b'{"id": "a", "box": null}\n')
    before = preds.read_bytes()
    code = main(["eval", "--data", str(pairs), "--predictions", str(preds), "--no-progress"])
    out, err = capsys.readouterr()
    assert code in (0, 2), err
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, err
        assert lines[0].startswith("differad: error:"), err
    assert preds.read_bytes() == before
    count("jsonl")


LABEL_CASES = NASTY_FILES + [
    b'{"d.png": [' + b"9" * 400 + b", 1, 2, 3]}",
    b'{"d.png": [1, 1, 5000, 5000]}',
    b'{"../d.png": [1, 1, 5, 5]}',
    b'{"/etc/passwd": [1, 1, 5, 5]}',
    b'{"d.png": "x"}',
    b'{"d.png": [[1]]}',
    b'{"fifo": [1, 1, 5, 5]}',
    b'{"missing.png": [1, 1, 5, 5]}',
]


@pytest.mark.parametrize("content", LABEL_CASES, ids=range(len(LABEL_CASES)))
def test_defect_labels(tmp_path: Path, count, content: bytes) -> None:
    import os

    from differad_edge.calibration.validate import load_defects

    cv2.imwrite(str(tmp_path / "d.png"), np.zeros((64, 64, 3), np.uint8))
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "labels.json").write_bytes(content)
    try:
        load_defects(tmp_path)
    except CalibrationError:
        pass
    count("labels")


MASK_CASES = [
    b"",
    b"care: 5",
    b"care: [[1, 2]]",
    b"care: [[[0,0],[10,0],[10,1e300]]]",
    b"ignore: {a: 1}",
    b"care: " + b"[" * 5000,
    b"\xff\xfe",
    b"a: &a [*a, *a]\ncare: *a",
    b"care: [[[0,0],[1,0]]]",
    b"- 1",
    b"care: [[[0,0],[63,0],[63,63]]]\nignore: [[[0,0],[63,0],[63,63],[0,63]]]",
    b"!!python/object:os.system {}",
    b"care: [[[0, 0], [1e9, 0], [0, 1e9]]]",
]


@pytest.mark.parametrize("content", MASK_CASES, ids=range(len(MASK_CASES)))
def test_care_mask_yaml(tmp_path: Path, count, content: bytes) -> None:
    from differad_edge.calibration.masks import load_care_mask

    p = tmp_path / "mask.yaml"
    p.write_bytes(content)
    try:
        mask = load_care_mask(p, (64, 64))
        assert mask.shape == (64, 64)
        assert mask.dtype == np.uint8
    except CalibrationError:
        pass
    count("masks")


@pytest.mark.parametrize(
    "content", [b"", b"not a png", b"\x89PNG\r\n\x1a\n\x00", b"#?RADIANCE\n-Y 9000 +X 9000\n"], ids=range(4)
)
def test_care_mask_png(tmp_path: Path, count, content: bytes) -> None:
    from differad_edge.calibration.masks import load_care_mask

    p = tmp_path / "mask.png"
    p.write_bytes(content)
    with pytest.raises(CalibrationError):
        load_care_mask(p, (64, 64))
    count("masks")


@given(json_values, st.sampled_from(["frames", "product_id", "format_version", "gates", "created", "source", None]))
def test_session_files(tmp_path: Path, count, value, key) -> None:
    from differad_edge.calibration.session import load_session

    good = {
        "format_version": 1,
        "product_id": "p",
        "source": "dir:x",
        "created": 0.0,
        "gates": {},
        "frames": [
            {
                "name": "a.png",
                "file": "frames/000000.png",
                "split": "build",
                "sha256": "0" * 64,
                "verdict": {"accepted": True},
            }
        ],
    }
    data = value if key is None else {**good, key: value}
    (tmp_path / "session.json").write_bytes(dumps(data))
    try:
        s = load_session(tmp_path)
        s.load_images(s.frames)
    except DifferadError as e:
        assert isinstance(e, CalibrationError), e
    count("sessions")
