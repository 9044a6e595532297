"""Tree lookahead bookkeeping: which KV entries each row attends, positions, rows read, branches kept."""

from __future__ import annotations

import numpy as np
import pytest

from differad_edge.lookahead import TreeCache


def test_a_call_without_branches_is_the_plain_causal_one() -> None:
    b = TreeCache(cached=4, position=10).batch([7, 8])
    assert b.causal
    assert b.past == 4
    assert b.rows == [1]
    assert b.positions.tolist() == [10, 11]
    assert b.visible.tolist() == np.tri(2, 6, 4, dtype=bool).tolist()


def test_branches_see_the_sequence_the_chain_and_themselves_only() -> None:
    tree = TreeCache(cached=3, position=20)
    b = tree.batch([5], [[1], [2, 9], [3]])
    assert b.tokens == [5, 1, 2, 9, 3]
    assert b.rows == [0, 1, 3, 4]
    assert not b.causal
    assert b.positions.tolist() == [20, 21, 21, 22, 21]  # each branch continues after the chain
    seq, chain = [True] * 3, [True]
    assert b.visible.tolist() == [
        seq + chain + [False, False, False, False],
        seq + chain + [True, False, False, False],
        seq + chain + [False, True, False, False],
        seq + chain + [False, True, True, False],
        seq + chain + [False, False, False, True],
    ]
    # keep branch 1 ([2, 9]): it joins the sequence, the other two are dead for good
    nxt = tree.batch([4], [[6]], keep=1)
    assert nxt.past == 8
    assert nxt.positions.tolist() == [23, 24]
    live = [True] * 4 + [False, True, True, False]
    assert nxt.visible.tolist() == [live + [True, False], live + [True, True]]
    later = tree.batch([0])
    assert later.positions.tolist() == [24]
    assert not later.causal
    assert later.visible[0, :10].tolist() == live + [True, False]


def test_a_call_needs_a_chain() -> None:
    with pytest.raises(ValueError, match="chain"):
        TreeCache(1, 1).batch([])
