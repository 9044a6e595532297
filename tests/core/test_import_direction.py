"""The dependency direction, read from the source (no import needed): the core imports no edge, and
the neutral modules (store, reference, outcome) import no engine."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "differad_edge"
EDGES = ("differad_edge.cli", "differad_edge.train", "differad_edge.export", "differad_edge.calibration", "rclpy")
NEUTRAL = ("store.py", "store_format.py", "reference.py", "outcome.py", "quality.py")


def _imports(path: Path) -> set[str]:
    """Absolute names of every import in a module (relative ones resolved against its package)."""
    package = ".".join(("differad_edge", *path.relative_to(CORE).parent.parts))
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
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
    if not path.exists():
        pytest.skip(f"{name} does not exist")
    bad = sorted(n for n in _imports(path) if n.startswith(("differad_edge.engines", "differad_edge.inspector")))
    assert not bad, f"{name} imports {bad}"
