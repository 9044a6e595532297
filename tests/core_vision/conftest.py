"""Fixtures of the core-vision tests."""

from __future__ import annotations

import numpy as np
import pytest

from .parts import make_product


@pytest.fixture
def product() -> np.ndarray:
    return make_product(256, seed=0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
