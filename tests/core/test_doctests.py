"""The ``>>>`` examples in the core modules' docstrings are true (they are part of the documentation)."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["boxes", "coords", "parsing", "metrics"])
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"differad_edge.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
