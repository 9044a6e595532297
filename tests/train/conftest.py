"""Fixtures of the train tests: a small synthetic pairs set (the real Algorithm 1 generator) and a
reward module that subprocess runs can import (the tiny random model never emits a parsable box, so
a run that must move the weights needs a reward that varies between completions)."""

from __future__ import annotations

from pathlib import Path

import pytest

VARYING_REWARD_MODULE = '''
import zlib


def text_hash_reward(completions, **kwargs):
    """Distinct texts get distinct rewards in [0, 1): a non-flat signal from a random model."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    texts = [t if isinstance(t, str) else str(t) for t in texts]
    return [(zlib.crc32(t.encode()) % 1000) / 1000 for t in texts]
'''


@pytest.fixture(scope="session")
def synth_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 pairs at 64x64 px (2 normals), written by differad_edge.synth."""
    from differad_edge.synth import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synth"), count=8, seed=0, size=64, progress=False)


@pytest.fixture(scope="session")
def reward_module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("rewards_mod")
    (d / "train_test_rewards.py").write_text(VARYING_REWARD_MODULE, encoding="utf-8")
    return d
