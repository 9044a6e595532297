"""``differad inspect`` / ``eval`` and the verdict contract, as a script in a cell would use them, on a
real photograph: verdict per line, exit status without parsing, store-aware inspection that gives
what the Python API gives, and ``inspect --json | eval --predictions``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from differad_edge.boxes import Box, iou
from differad_edge.dataset import Pair, write_pairs
from differad_edge.engines import create_engine
from differad_edge.images import save_image
from differad_edge.inspector import Inspector
from differad_edge.store import ReferenceStore
from differad_edge.variation import build_variation_model

from .conftest import run_cli

SCRATCH = Box(38, 118, 93, 153)
SPOT = Box(53, 193, 68, 208)


def _good(ref: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(ref + rng.normal(0, 2, ref.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("photos")
    ref = np.ascontiguousarray(data.astronaut()[::2, ::2])
    two = _good(ref, 1)
    cv2.line(two, (40, 120), (90, 150), (250, 250, 250), 3)
    cv2.circle(two, (60, 200), 7, (0, 0, 0), -1)
    mono = cv2.cvtColor(_good(ref, 2), cv2.COLOR_RGB2GRAY)
    cv2.line(mono, (40, 120), (90, 150), 250, 3)
    images = {
        "reference": ref,
        "good": _good(ref, 0),
        "two": two,
        "mono": mono,
        "unrelated": np.ascontiguousarray(data.coffee()[:256, :256]),
        "cropped": _good(ref, 3)[0:160, 0:160].copy(),
        "blurred": cv2.GaussianBlur(_good(ref, 4), (0, 0), 3),
        "overexposed": np.clip(_good(ref, 5).astype(int) * 3, 0, 255).astype(np.uint8),
        "small": cv2.resize(_good(ref, 6), (200, 180)),
    }
    paths = {k: root / f"{k}.png" for k in images}
    for k, img in images.items():
        save_image(paths[k], img)
    return paths


def _json_rows(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.strip().splitlines()]


def test_ok_and_ng_exit_0_with_every_defect(photos: dict[str, Path]) -> None:
    proc = run_cli("inspect", "-r", photos["reference"], "-t", photos["good"], photos["two"], "--json")
    assert proc.returncode == 0, proc.stderr
    good, two = _json_rows(proc)
    assert good["verdict"] == "OK"
    assert good["id"] == str(photos["good"])  # an id, so eval --predictions can score the lines
    assert two["verdict"] == "NG"
    boxes = [Box.from_seq(d["box"]) for d in two["defects"]]
    assert len(boxes) == 2
    for spot in (SCRATCH, SPOT):
        assert max(iou(b, spot) for b in boxes) >= 0.4


@pytest.mark.parametrize(
    ("target", "extra", "reason"),
    [
        ("unrelated", (), "alignment_failed"),
        ("cropped", (), "partial_view"),
        ("blurred", (), "image_quality"),
        ("overexposed", (), "image_quality"),
        ("small", ("--no-align",), "size_mismatch"),
        ("mono", ("--channel-mismatch", "refuse"), "channel_mismatch"),
    ],
)
def test_not_inspected_has_its_reason_and_exit_3(
    photos: dict[str, Path], target: str, extra: tuple, reason: str
) -> None:
    proc = run_cli("inspect", "-r", photos["reference"], "-t", photos[target], "--json", *extra)
    assert proc.returncode == 3, proc.stderr
    (row,) = _json_rows(proc)
    assert row["verdict"] == "NOT_INSPECTED"
    assert row["reason"] == reason
    assert row["message"]
    assert row["defects"] == []
    assert row["box"] is None
    human = run_cli("inspect", "-r", photos["reference"], "-t", photos[target], *extra)
    assert human.returncode == 3
    assert f"NOT INSPECTED ({reason})" in human.stdout
    assert "NOT INSPECTED" in human.stderr  # the closing line says how many


def test_mono_frame_is_compared_in_gray_and_the_line_says_so(photos: dict[str, Path]) -> None:
    proc = run_cli("inspect", "-r", photos["reference"], "-t", photos["mono"])
    assert proc.returncode == 0, proc.stderr
    assert "NG 1 defect" in proc.stdout
    assert "compared in luminance" in proc.stdout


def test_colors_on_request(photos: dict[str, Path]) -> None:
    proc = run_cli(
        "inspect",
        "-r",
        photos["reference"],
        "-t",
        photos["good"],
        photos["two"],
        photos["blurred"],
        "--color",
        "always",
    )
    assert "\033[32mOK" in proc.stdout
    assert "\033[31mNG" in proc.stdout
    assert "\033[33mNOT INSPECTED" in proc.stdout
    plain = run_cli("inspect", "-r", photos["reference"], "-t", photos["good"])
    assert "\033[" not in plain.stdout  # not a terminal: no escape codes


def test_out_writes_verdict_images_and_heat_map_and_never_over_inputs(photos: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("inspect", "-r", photos["reference"], "-t", photos["two"], photos["blurred"], "--out", out)
    assert proc.returncode == 3, proc.stderr
    from differad_edge.images import load_image

    two = load_image(out / "two.png")
    assert two.shape[1] >= 3 * 256  # reference | boxes | heat map
    banner = two[2, 300]
    assert tuple(int(v) for v in banner) == (220, 30, 30)  # NG red banner over the target panel
    blurred = load_image(out / "blurred.png")
    assert tuple(int(v) for v in blurred[2, 300]) == (245, 160, 0)  # NOT INSPECTED amber
    before = photos["two"].read_bytes()
    clash = run_cli("inspect", "-r", photos["reference"], "-t", photos["two"], "--out", photos["two"].parent)
    assert clash.returncode == 2
    assert "would overwrite the input" in clash.stderr
    assert photos["two"].read_bytes() == before


def test_engine_options_typed_with_suggestions(photos: dict[str, Path], tmp_path: Path) -> None:
    strict = run_cli(
        "inspect", "-r", photos["reference"], "-t", photos["two"], "--json", "--engine-option", "min_area=100000"
    )
    assert strict.returncode == 0, strict.stderr
    assert _json_rows(strict)[0]["verdict"] == "OK"  # the option reached the engine
    cfg = tmp_path / "golden.yaml"
    cfg.write_text("min_area: 100000\n")
    from_file = run_cli("inspect", "-r", photos["reference"], "-t", photos["two"], "--json", "--engine-config", cfg)
    assert _json_rows(from_file)[0]["verdict"] == "OK"
    typo = run_cli("inspect", "-r", photos["reference"], "-t", photos["two"], "--engine-option", "min_aera=3")
    assert typo.returncode == 2
    assert "did you mean 'min_area'" in typo.stderr
    bad = run_cli("inspect", "-r", photos["reference"], "-t", photos["two"], "--engine-option", "k=-1")
    assert bad.returncode == 2
    assert "k=-1" in bad.stderr


def _calibrated_store(root: Path, photos: dict[str, Path]) -> ReferenceStore:
    from differad_edge.images import load_image

    ref = load_image(photos["reference"])
    goods = [ref] + [_good(ref, 10 + i) for i in range(4)]
    mean, spread = build_variation_model(goods, "median_mad")
    care = np.full(ref.shape[:2], 255, np.uint8)
    care[:, :20] = 0  # a don't-care strip
    store = ReferenceStore(root)
    v = store.add_version("helmet", ref, care_mask=care, mean=mean, spread=spread)
    store.set_validation("helmet", v, True, {"golden": {"k": 3.0, "abs_threshold": 18.0}})
    store.promote("helmet", v)
    return store


def test_store_inspection_matches_the_python_api(photos: dict[str, Path], tmp_path: Path) -> None:
    store = _calibrated_store(tmp_path / "store", photos)
    targets = [photos["good"], photos["two"], photos["blurred"]]
    proc = run_cli("inspect", "--store", store.root, "--product", "helmet", "-t", *targets, "--json")
    assert proc.returncode == 3, proc.stderr
    rows = _json_rows(proc)
    from differad_edge.images import load_image

    inspector = Inspector(create_engine("golden"), store=store)
    for row, target in zip(rows, targets, strict=True):
        api = inspector.inspect(load_image(target), "helmet")
        assert row["verdict"] == api.verdict.value
        assert row["reference_version"] == api.reference_version
        assert [d["box"] for d in row["defects"]] == [d.box.as_int_list() for d in api.detection.defects]
        assert row["score"] == pytest.approx(api.detection.score, abs=1e-6)
    unknown = run_cli("inspect", "--store", store.root, "--product", "ghost", "-t", photos["good"])
    assert unknown.returncode == 2
    assert "ghost" in unknown.stderr


def test_inspect_json_is_scored_by_eval(photos: dict[str, Path], tmp_path: Path) -> None:
    pairs = [
        Pair("a", photos["reference"], photos["good"], Box(0, 0, 0, 0), "helmet", "photo"),
        Pair("b", photos["reference"], photos["two"], SPOT, "helmet", "photo"),
        Pair("c", photos["reference"], photos["blurred"], Box(0, 0, 0, 0), "helmet", "photo"),
    ]
    pairs_file = write_pairs(tmp_path / "pairs.jsonl", pairs)
    proc = run_cli(
        "inspect", "-r", photos["reference"], "-t", photos["good"], photos["two"], photos["blurred"], "--json"
    )
    preds = tmp_path / "preds.jsonl"
    preds.write_text(proc.stdout)
    ev = run_cli("eval", "--data", pairs_file, "--predictions", preds, "--out", tmp_path / "ev")
    assert ev.returncode == 0, ev.stderr
    assert "skipped 0 malformed lines" in ev.stdout
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["counts"]["missing_predictions"] == 0
    assert report["metrics"]["overall"]["tp"] == 1
    confusion = report["metrics"]["image"]["confusion"]
    assert confusion["good"] == {"OK": 1, "NG": 0, "NOT_INSPECTED": 1}
    assert confusion["defective"]["NG"] == 1
    assert "Verdicts:" in ev.stdout
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "zzz", "box": None}) + "\n")
    none_match = run_cli("eval", "--data", pairs_file, "--predictions", other)
    assert none_match.returncode == 2
    assert "no prediction" in none_match.stderr
    own = run_cli(
        "eval", "--data", pairs_file, "--predictions", tmp_path / "ev" / "predictions.jsonl", "--out", tmp_path / "ev"
    )
    assert own.returncode == 2
    assert "would overwrite the input" in own.stderr
