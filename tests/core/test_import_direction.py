"""The dependency direction, read from the source (no import needed): the core imports no edge, and
the neutral modules (store, reference, outcome) import no engine."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "differad_edge"
EDGES = (
    # the edge folders installed as differad_edge.* sub-packages (the station web UI lives in calibration)
    *("differad_edge.cli", "differad_edge.train", "differad_edge.export", "differad_edge.calibration"),
    # the ROS edge and ROS itself
    *("differad_edge_ros", "differad_edge_msgs", "rclpy", "std_msgs", "sensor_msgs", "vision_msgs"),
    # what only the edges need: training (TRL), the station's web server
    *("trl", "fastapi", "uvicorn", "starlette"),
)
NEUTRAL = ("store.py", "store_format.py", "reference.py", "outcome.py", "quality.py")


def _imports(path: Path) -> set[str]:
    """Absolute names of every import in a module (relative ones resolved against its package)."""
    return _imports_text(path.read_text(encoding="utf-8"), path)


def _imports_text(source: str, path: Path) -> set[str]:
    package = ".".join(("differad_edge", *path.relative_to(CORE).parent.parts))
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def _core_files() -> list[Path]:
    return list(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_no_edge(path: Path) -> None:
    bad = sorted(n for n in _imports(path) if n.startswith(EDGES))
    assert not bad, f"{path.name} imports edges: {bad}"


@pytest.mark.parametrize("name", NEUTRAL)
def test_neutral_modules_import_no_engine(name: str) -> None:
    path = CORE / name
    assert path.exists(), f"{name} was moved: update NEUTRAL so the guard keeps reading it"
    bad = sorted(n for n in _imports(path) if n.startswith(("differad_edge.engines", "differad_edge.inspector")))
    assert not bad, f"{name} imports {bad}"


def test_the_guard_sees_relative_and_lazy_imports() -> None:
    """A guard that reads nothing passes everything: a relative import and one inside a function resolve."""
    fake = CORE / "engines" / "x.py"  # only its place in the package matters; nothing is written there
    source = "from ..cli import main\n\ndef f():\n    from . import golden\n    import rclpy\n"
    names = _imports_text(source, fake)
    assert "differad_edge.cli.main" in names
    assert "differad_edge.engines.golden" in names
    assert "rclpy" in names
