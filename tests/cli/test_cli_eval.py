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
    assert "| Overall" in proc.stdout
    assert "Acc@0.3" in proc.stdout
    assert f"scored {len(pairs)} samples; skipped 0 malformed lines and 0 bad samples" in proc.stdout

    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"scored": len(pairs), "malformed_lines": 0, "bad_samples": 0, "missing_predictions": 0}
    overall = report["metrics"]["overall"]
    assert overall["n"] == len(pairs)
    assert overall["n_nor"] + overall["n_ano"] == len(pairs)
    assert report["engine"]["engine"] == "golden"

    worst = report["worst"]
    assert len(worst) == 3
    assert [w["iou"] for w in worst] == sorted(w["iou"] for w in worst)
    for w in worst:
        assert load_image(out / w["image"]).shape[1] > 128  # reference beside the annotated target
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(p.id for p in pairs)


def test_eval_skips_and_counts_bad_lines_and_samples(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path / "data")
    first = read_pairs(data).pairs[0]
    corrupt = data.parent / "corrupt.png"
    corrupt.write_bytes(b"definitely not an image")
    bad_sample = {
        "id": "broken-target",
        "reference": str(first.reference),
        "target": "corrupt.png",
        "box": [0, 0, 0, 0],
        "category": first.category,
    }
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
    assert report["counts"]["malformed_lines"] == 1
    assert report["counts"]["bad_samples"] == 1
    assert report["metrics"]["overall"]["n"] == n_good
    assert report["bad_samples"][0].startswith("broken-target: ")


def test_limit(small_dataset: Path) -> None:
    proc = run_cli("eval", "--data", small_dataset, "--limit", "4", "--no-progress", "--no-align")
    assert proc.returncode == 0, proc.stderr
    assert "scored 4 samples" in proc.stdout


def _answer(pair: Pair) -> str:
    """A perfect raw model answer: the true box on the 0-1000 scale of the target."""
    return (
        f"<think>found it</think><answer>{format_box(to_model_scale(pair.box, *image_file_size(pair.target)))}</answer>"
    )


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
    assert report["counts"]["malformed_lines"] == 1
    assert report["counts"]["missing_predictions"] == 1
    overall = report["metrics"]["overall"]
    n = len(pairs)
    assert overall["acc30"] == (n - 2) / n  # every parsed answer hits; the garbage and the missing one score 0
    assert overall["fn"] == 2
    assert overall["fp"] == 0
    worst_ids = {w["id"] for w in report["worst"][:2]}
    assert worst_ids == {garbage.id, missing.id}


def test_predictions_in_other_model_families_formats(pair_images: dict[str, Path], tmp_path: Path) -> None:
    """The protocol's other answer syntaxes score like ours, mapped on the non-square (160x120) target."""
    from .conftest import DEFECT_BOX

    x1, y1, x2, y2 = (round(v) for v in to_model_scale(DEFECT_BOX, 160, 120).as_tuple())
    answers = {  # id -> (target, raw answer or pixel box)
        "qwen2": ("defect", f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"),
        "nested": ("defect", f"The defect is at [[{x1},{y1},{x2},{y2}]]."),
        "plain": ("defect", f"{x1} {y1} {x2} {y2}"),
        "pixel": ("defect", DEFECT_BOX.as_int_list()),
        "normal": ("good", "<think>same</think><answer>(0,0),(0,0)</answer>"),
        "false_alarm": ("good", "<answer>[10,10,200,200]</answer>"),
    }
    (tmp_path / "pairs.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "id": i,
                    "reference": str(pair_images["reference"]),
                    "target": str(pair_images[t]),
                    "box": [0, 0, 0, 0] if t == "good" else DEFECT_BOX.as_int_list(),
                    "category": "part",
                }
            )
            + "\n"
            for i, (t, _) in answers.items()
        )
    )
    (tmp_path / "preds.jsonl").write_text(
        "".join(
            json.dumps({"id": i, "box" if isinstance(a, list) else "text": a}) + "\n" for i, (_, a) in answers.items()
        )
    )
    out = tmp_path / "out"
    proc = run_cli(
        "eval",
        "--data",
        tmp_path / "pairs.jsonl",
        "--predictions",
        tmp_path / "preds.jsonl",
        "--out",
        out,
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    ious = {row["id"]: row["iou"] for row in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    for family in ("qwen2", "nested", "plain"):  # a swapped width/height would miss the box badly
        assert ious[family] > 0.9, (family, ious)
    assert ious["pixel"] == 1.0
    assert ious["normal"] == 1.0
    assert ious["false_alarm"] == 0.0
    overall = json.loads((out / "report.json").read_text())["metrics"]["overall"]
    assert (overall["tp"], overall["fp"], overall["fn"]) == (4, 1, 0)
    assert overall["acc30"] == 5 / 6
    assert overall["f1"] == 8 / 9
