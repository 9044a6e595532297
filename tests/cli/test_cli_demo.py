"""``differad demo``: the whole pipeline on a synthetic cell, deterministic by seed."""

from __future__ import annotations

import json
from pathlib import Path

from differad_edge.images import load_image
from differad_edge.store import ReferenceStore

from .conftest import run_cli


def test_demo_registers_inspects_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = run_cli("demo", "--out", out, "--seed", "3", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "| Overall" in proc.stdout
    assert "products registered and promoted" in proc.stdout

    summary = json.loads((out / "summary.json").read_text())
    products = summary["products"]
    assert len(products) == 4
    assert summary["parts_inspected"] == 32
    overall = summary["metrics"]["overall"]
    assert overall["n_ano"] == 16
    assert overall["n_nor"] == 16
    # The golden engine finds clearly visible synthetic defects and stays quiet on good parts.
    assert overall["acc30"] >= 0.75, overall
    assert overall["miou_nor"] >= 0.9, overall
    for category in summary["metrics"]["per_category"]:
        assert f"| {category} " in proc.stdout

    store = ReferenceStore(out / "references")
    assert sorted(store.products()) == sorted(products)
    for pid, version in products.items():
        assert store.active_version(pid) == version
        assert store.load(pid).spread is not None  # the variation model was registered with the reference
        assert [e["event"] for e in store.history(pid)] == ["add", "validation", "promote"]

    images = sorted((out / "images").rglob("*.png"))
    assert len(images) == 32
    assert load_image(images[0]).shape[1] > 256  # reference beside the annotated target
    assert (out / "overview.png").is_file()
    assert (out / "metrics.png").is_file()


def test_demo_is_deterministic_and_defaults_to_a_folder_in_cwd(tmp_path: Path) -> None:
    small = ["--seed", "1", "--size", "128", "--goods", "2", "--targets", "2", "--no-progress"]
    first = run_cli("demo", *small, cwd=tmp_path)
    second = run_cli("demo", *small, "--out", tmp_path / "again")
    assert first.returncode == 0, first.stderr + second.stderr
    assert second.returncode == 0, first.stderr + second.stderr
    a = json.loads((tmp_path / "differad-demo" / "summary.json").read_text())
    b = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert a["metrics"] == b["metrics"]
    assert a["parts_inspected"] == 16
