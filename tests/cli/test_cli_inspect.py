"""``differad inspect`` end to end: JSON per target, boxes in target pixels, annotated images."""

from __future__ import annotations

import json
from pathlib import Path

from differad_edge.boxes import Box, iou
from differad_edge.images import image_size, load_image

from .conftest import DEFECT_BOX, run_cli

REQUIRED_KEYS = {"anomaly", "box", "score", "valid", "engine", "timings_ms"}


def test_json_finds_the_defect_and_stays_silent_on_the_good_part(pair_images: dict[str, Path]) -> None:
    proc = run_cli(
        "inspect",
        "--reference",
        pair_images["reference"],
        "--target",
        pair_images["defect"],
        pair_images["good"],
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2  # one JSON object per target, in order
    bad, good = (json.loads(line) for line in lines)
    for result in (bad, good):
        assert REQUIRED_KEYS <= result.keys()
        assert result["engine"] == "golden"
        assert result["valid"] is True
        assert "text" not in result  # only language-model engines answer with text
        assert result["timings_ms"]
        assert all(v >= 0 for v in result["timings_ms"].values())

    assert bad["target"] == str(pair_images["defect"])
    assert bad["anomaly"] is True
    assert all(isinstance(v, int) for v in bad["box"])
    assert iou(Box.from_seq(bad["box"]), DEFECT_BOX) >= 0.5, bad["box"]

    assert good["anomaly"] is False
    assert good["box"] is None
    assert good["score"] < bad["score"]


def test_no_align_gives_the_same_box_on_a_registered_pair(pair_images: dict[str, Path]) -> None:
    args = ["inspect", "-r", pair_images["reference"], "-t", pair_images["defect"], "--json"]
    aligned, plain = run_cli(*args), run_cli(*args, "--no-align")
    assert aligned.returncode == 0, aligned.stderr + plain.stderr
    assert plain.returncode == 0, aligned.stderr + plain.stderr
    a, p = json.loads(aligned.stdout), json.loads(plain.stdout)
    assert "alignment" not in p
    assert a["alignment"]["ok"] is True
    assert iou(Box.from_seq(a["box"]), Box.from_seq(p["box"])) >= 0.9


def test_box_of_a_moved_part_is_in_target_pixels(pair_images: dict[str, Path]) -> None:
    """Alignment registers the moved part; the box comes back in the target's own pixels."""
    proc = run_cli("inspect", "-r", pair_images["reference"], "-t", pair_images["moved"], "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["alignment"]["ok"] is True
    assert result["anomaly"] is True
    assert iou(Box.from_seq(result["box"]), DEFECT_BOX) >= 0.7, result["box"]


def test_out_writes_annotated_images_and_detections(pair_images: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli(
        "inspect",
        "-r",
        pair_images["reference"],
        "-t",
        pair_images["defect"],
        pair_images["good"],
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert "defect.png: NG 1 defect [" in proc.stdout  # human-readable lines without --json
    assert "good.png: OK score=" in proc.stdout
    target_w, target_h = image_size(load_image(pair_images["defect"]))
    for name in ("defect.png", "good.png"):
        w, h = image_size(load_image(out / name))
        assert w > target_w
        assert h >= target_h
    rows = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [r["anomaly"] for r in rows] == [True, False]


def test_a_bad_target_among_several_is_reported_and_the_others_are_inspected(
    pair_images: dict[str, Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    out = tmp_path / "out"
    proc = run_cli(
        "inspect",
        "-r",
        pair_images["reference"],
        "-t",
        pair_images["defect"],
        corrupt,
        tmp_path / "missing.png",
        pair_images["good"],
        "--json",
        "--out",
        out,
    )
    assert proc.returncode == 2, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert [r["target"] for r in rows] == [
        str(p) for p in (pair_images["defect"], corrupt, tmp_path / "missing.png", pair_images["good"])
    ]
    assert rows[0]["anomaly"] is True
    assert rows[3]["anomaly"] is False
    assert "corrupt.png" in rows[1]["error"]
    assert "missing.png" in rows[2]["error"]
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 3
    assert all(line.startswith("differad: error: ") for line in errors)
    assert "2 of 4 targets" in errors[-1]
    assert "Traceback" not in proc.stderr
    assert (out / "detections.jsonl").read_text().splitlines() == proc.stdout.strip().splitlines()
    assert sorted(p.name for p in out.glob("*.png")) == ["defect.png", "good.png"]
