"""docs/ARCHITECTURE.md stays true to the code: every core module it lists imports, and every name in
backticks of its contract (function, class, method, field, constant) exists in that module, one of its
classes or, for a package, one of its submodules."""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "docs/ARCHITECTURE.md").read_text(encoding="utf-8")
#: Words in backticks that name no Python object: a manifest field, a store id, flags, the runtime's packages.
PROSE = {"grammar", "product", "O_NOFOLLOW", "onnxruntime", "tokenizers"}
ROWS = re.findall(r"^\| `([a-z_]+)` \| (.*) \|$", TEXT, re.M)
BULLETS = re.findall(r"^- `((?:engines/)?[a-z_]+(?:\.py)?)` \[[a-z-]+\][:,] (.*(?:\n  .*)*)", TEXT, re.M)
CONTRACTS = ROWS + BULLETS


def _module(name: str) -> ModuleType:
    return importlib.import_module("differad_edge." + name.removesuffix(".py").replace("/", "."))


def _names(module: ModuleType) -> set[str]:
    """What a contract may name: the module's attributes, its classes' attributes and fields, and the same
    for each submodule of a package."""
    modules = [module]
    if hasattr(module, "__path__"):
        modules += [
            importlib.import_module(f"{module.__name__}.{m.name}") for m in pkgutil.iter_modules(module.__path__)
        ]
    names: set[str] = set()
    for mod in modules:
        names |= set(dir(mod)) | {mod.__name__.rsplit(".", 1)[-1]}
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            names |= (
                set(dir(cls)) | set(getattr(cls, "__dataclass_fields__", {})) | set(getattr(cls, "model_fields", {}))
            )
    return names


def test_the_contracts_are_read() -> None:
    listed = {m for m, _ in CONTRACTS}
    assert {"errors", "engines", "store", "inspector", "synth", "engines/golden.py"} <= listed, listed


@pytest.mark.parametrize(("module", "api"), CONTRACTS, ids=[m for m, _ in CONTRACTS])
def test_every_name_a_contract_gives_exists(module: str, api: str) -> None:
    names = _names(_module(module)) | set(dir(importlib.import_module("differad_edge.engines")))
    missing = []
    for token in re.findall(r"`([^`]+)`", api):
        head = re.match(r"\.?([A-Za-z_]\w*)", token)
        if not head or "=" in token.split("(")[0] or "/" in token.split("(")[0]:
            continue  # a keyword default (`answer_only=True`) or a path / message type, not a name
        name = head.group(1)
        if token.startswith("differad_edge."):
            if importlib.util.find_spec(token) is None:
                missing.append(token)
            continue
        if name not in names and name not in PROSE and not hasattr(builtins, name):
            missing.append(token)
    assert not missing, f"ARCHITECTURE.md's `{module}` names what the code does not have: {missing}"
