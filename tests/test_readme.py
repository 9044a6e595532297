"""The README's commands work as written: every command line in its shell blocks names a real command
whose parser accepts exactly those arguments, and the `differad inspect` quick start runs on real
photographs with the very arguments the README shows."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PARSERS = {
    "differad": "differad_edge.cli.main",
    "differad-export": "differad_edge.export.cli",
    "differad-train": "differad_edge.train.cli",
    "differad-calibrate": "differad_edge.calibration.cli",
    "differad-station": "differad_edge.calibration.station.cli",
}


def _commands() -> list[list[str]]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(shlex.split(line))
    return out


def test_the_readme_is_short_and_has_the_two_set_up_commands() -> None:
    assert len(README.splitlines()) <= 130  # two screens of user path; the manual is in docs/
    cmds = _commands()
    assert ["make", "demo"] in cmds
    assert ["make", "test"] in cmds
    for link in re.findall(r"\]\(([^)#]+)\)", README):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), f"README links to a missing file: {link}"


@pytest.mark.parametrize("argv", [c for c in _commands() if c[0] in PARSERS], ids=" ".join)
def test_every_readme_command_parses(argv: list[str]) -> None:
    parser = importlib.import_module(PARSERS[argv[0]]).build_parser()
    try:
        parser.parse_args(argv[1:])
    except SystemExit as e:
        if "--help" in argv or "--print-config" in argv:
            return
        pytest.fail(f"README command {' '.join(argv)!r} is refused by its parser (exit {e.code})")


def test_every_readme_command_names_a_known_program() -> None:
    known = {"make", *PARSERS}
    assert {c[0] for c in _commands()} <= known


def test_the_inspect_quick_start_runs_as_written(tmp_path: Path) -> None:
    from skimage import data

    from differad_edge.images import save_image

    ref = np.ascontiguousarray(data.astronaut()[::2, ::2])
    rng = np.random.default_rng(0)
    good = np.clip(ref + rng.normal(0, 2, ref.shape), 0, 255).astype(np.uint8)
    bad = good.copy()
    bad[100:120, 60:90] = 0
    for name, img in (("reference.png", ref), ("part1.png", good), ("part2.png", bad)):
        save_image(tmp_path / name, img)
    argv = next(c for c in _commands() if c[:2] == ["differad", "inspect"] and "reference.png" in c)
    proc = subprocess.run(
        [sys.executable, "-m", "differad_edge.cli.main", *argv[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "part1.png: OK" in proc.stdout
    assert "part2.png: NG" in proc.stdout
    assert (tmp_path / "annotated" / "detections.jsonl").exists()
