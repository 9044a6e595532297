"""``differad eval``: metric table per category, report.json, worst cases, robustness to bad lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from differad_edge.coords import to_model_scale
from differad_edge.dataset import Pair, image_file_size, read_pairs
from differad_edge.images import load_image
from differad_edge.parsing import format_box

from .conftest import run_cli


def copy_dataset(pairs_path: Path, dest: Path) -> Path:
    """A private copy, so tests may append bad lines without touching the shared fixture."""
    shutil.copytree(pairs_path.parent, dest)
    return dest / pairs_path.name


def test_engine_eval_prints_table_and_writes_report(small_dataset: Path, tmp_path: Path) -> None:
    pairs = read_pairs(small_dataset).pairs
    out = tmp_path / "out"
    proc = run_cli("eval", "--data", small_dataset, "--out", out, "--worst", "3")
    assert proc.returncode == 0, proc.stderr
    assert "100%" in proc.stderr  # the progress bar ran to the end
    for category in {p.category for p in pairs}:
        assert f"| {category} " in proc.stdout
    assert "| Overall" in proc.stdout and "Acc@0.3" in proc.stdout
    assert f"scored {len(pairs)} samples; skipped 0 malformed lines and 0 bad samples" in proc.stdout

    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"scored": len(pairs), "malformed_lines": 0, "bad_samples": 0, "missing_predictions": 0}
    overall = report["metrics"]["overall"]
    assert overall["n"] == len(pairs) and overall["n_nor"] + overall["n_ano"] == len(pairs)
    assert report["engine"]["engine"] == "golden"

    worst = report["worst"]
    assert len(worst) == 3 and [w["iou"] for w in worst] == sorted(w["iou"] for w in worst)
    for w in worst:
        assert load_image(out / w["image"]).shape[1] > 128  # reference beside the annotated target
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(p.id for p in pairs)


def test_eval_skips_and_counts_bad_lines_and_samples(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path / "data")
    first = read_pairs(data).pairs[0]
    corrupt = data.parent / "corrupt.png"
    corrupt.write_bytes(b"definitely not an image")
    bad_sample = {"id": "broken-target", "reference": str(first.reference), "target": "corrupt.png",
                  "box": [0, 0, 0, 0], "category": first.category}
    with data.open("a") as f:
        f.write("{this line is not json\n")
        f.write(json.dumps(bad_sample) + "\n")
    n_good = len(read_pairs(small_dataset).pairs)

    out = tmp_path / "out"
    proc = run_cli("eval", "--data", data, "--out", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"scored {n_good} samples; skipped 1 malformed lines and 1 bad samples" in proc.stdout
    assert "skipped sample broken-target" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["malformed_lines"] == 1 and report["counts"]["bad_samples"] == 1
    assert report["metrics"]["overall"]["n"] == n_good
    assert report["bad_samples"][0].startswith("broken-target: ")


def test_limit(small_dataset: Path) -> None:
    proc = run_cli("eval", "--data", small_dataset, "--limit", "4", "--no-progress", "--no-align")
    assert proc.returncode == 0, proc.stderr
    assert "scored 4 samples" in proc.stdout


def _answer(pair: Pair) -> str:
    """A perfect raw model answer: the true box on the 0-1000 scale of the target."""
    return f"<think>found it</think><answer>{format_box(to_model_scale(pair.box, *image_file_size(pair.target)))}</answer>"


def test_predictions_file_with_raw_texts(small_dataset: Path, tmp_path: Path) -> None:
    pairs = read_pairs(small_dataset).pairs
    anomalous = [p for p in pairs if not p.box.is_zero]
    garbage, missing = anomalous[0], anomalous[1]
    lines = [{"id": p.id, "text": _answer(p)} for p in pairs if p not in (garbage, missing)]
    lines.append({"id": garbage.id, "text": "I think the part looks fine, maybe?"})
    lines.append({"id": "not-in-pairs", "oops": 1})  # malformed: neither text nor box
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(x) + "\n" for x in lines))

    out = tmp_path / "out"
    proc = run_cli("eval", "--data", small_dataset, "--predictions", preds, "--out", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "1 pairs had no prediction" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["engine"]["engine"] == "predictions"
    assert report["counts"]["malformed_lines"] == 1 and report["counts"]["missing_predictions"] == 1
    overall = report["metrics"]["overall"]
    n = len(pairs)
    assert overall["acc30"] == (n - 2) / n  # every parsed answer hits; the garbage and the missing one score 0
    assert overall["fn"] == 2 and overall["fp"] == 0
    worst_ids = {w["id"] for w in report["worst"][:2]}
    assert worst_ids == {garbage.id, missing.id}
