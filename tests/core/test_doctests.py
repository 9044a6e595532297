"""The ``>>>`` examples in the docstrings are true (they are part of the documentation).

Every module with an example is found by reading the source files, so a new example is run without
editing this list; nothing is imported to find them (the edges are not imported by the core walk).
A module whose optional dependency is not installed is skipped, naming it.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
from pathlib import Path

import pytest

import differad_edge

#: Edge packages installed under ``differad_edge`` (their folders are found through the import system).
EDGES = ("train", "export", "calibration")
#: Edges whose import pulls in torch / TRL (seconds): marked slow.
HEAVY_IMPORTS = ("import torch", "from torch", "import trl", "from trl", "import transformers", "from transformers")


def _modules(folder: Path, package: str, skip: tuple[str, ...] = ()) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder)
        if rel.parts[0] in skip or ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = rel.with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        found.append((".".join((package, *parts)), path))
    return found


def _core() -> list[str]:
    root = Path(differad_edge.__file__).parent
    return [name for name, _ in _modules(root, "differad_edge", skip=("cli", *EDGES))]


def _edges() -> list:
    params = []
    for edge in EDGES:
        spec = importlib.util.find_spec(f"differad_edge.{edge}")  # imports differad_edge only
        if spec is None or not spec.submodule_search_locations:
            continue
        for name, path in _modules(Path(next(iter(spec.submodule_search_locations))), f"differad_edge.{edge}"):
            heavy = any(line.startswith(HEAVY_IMPORTS) for line in path.read_text(encoding="utf-8").splitlines())
            params.append(pytest.param(name, marks=pytest.mark.slow) if heavy else name)
    return params


def _run(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("differad_edge",):
            raise
        pytest.skip(f"{name} needs the optional package {e.name!r} (install the extra that provides it)")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has '>>>' in its source but doctest found no example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see above)"


CORE = _core()


def test_the_core_walk_finds_the_documented_modules() -> None:
    """The discovery itself can fail: the modules known to carry examples are among those found."""
    for name in ("boxes", "coords", "parsing", "metrics", "alignment", "variation", "onnxrt.bundle", "lru"):
        assert f"differad_edge.{name}" in CORE, CORE
    assert not [n for n in CORE if n.startswith("differad_edge.cli")]


@pytest.mark.parametrize("name", CORE)
def test_core_docstring_examples(name: str) -> None:
    _run(name)


@pytest.mark.parametrize("name", _edges())
def test_edge_docstring_examples(name: str) -> None:
    _run(name)
