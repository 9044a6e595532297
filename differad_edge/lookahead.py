"""Tree lookahead for grammar-constrained greedy decoding: two model decisions per forward pass.

Under the answer grammar the candidates of the next decision are known before the model picks
one: a few digits or the end of a number. One decoder call then runs the tokens just chosen (the
*chain*) plus one *branch* per candidate (the candidate and the tokens the grammar forces after
it). Each branch attends the sequence, the chain and itself only (a tree attention mask), at the
positions it would have in the sequence. The chain's last row gives this decision; the branch of
the candidate picked already holds the logits of the decision after it. Branches not picked stay in
the KV cache, masked out for good: no cache surgery, and a few dead entries cost less than a pass.
The tokens are those of one decision per pass (exact greedy), in about half the passes; on a GPU a
decode pass costs about the same for 1 or 30 tokens, so that is half the decode time.

Pure bookkeeping (numpy): the engines turn a :class:`TreeBatch` into their own mask and positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Above this many candidates (thinking text: the whole vocabulary) a pass runs no branches.
MAX_BRANCHES = 16


@dataclass(frozen=True)
class TreeBatch:
    """One decoder call: its new tokens, their positions, the attention mask and the rows to read."""

    tokens: list[int]  # the chain, then each branch, flattened
    positions: np.ndarray  # (q,) int64: each token's position in the sequence (text position ids)
    visible: np.ndarray  # (q, past + q) bool: which KV entries (the cache's, then this call's) a row attends
    rows: list[int]  # rows whose logits are read: the chain's last token, then each branch's last
    past: int  # KV entries in the cache before this call

    @property
    def causal(self) -> bool:
        """True when the mask is the plain causal one (no branches, no dead entries)."""
        return len(self.rows) == 1 and bool(self.visible[:, : self.past].all())


class TreeCache:
    """Which entries of one sequence's KV cache are live while branches come and go.

    ``cached`` entries are in the cache already (all live: the prompt), ``position`` is the next
    token's position (with M-RoPE the text position after the images, not the entry count).
    """

    def __init__(self, cached: int, position: int) -> None:
        self.live = np.ones(int(cached), bool)
        self.position = int(position)
        self._spans: list[tuple[int, int]] = []  # cache ranges of the last call's branches

    def batch(self, chain: list[int], branches: Sequence[list[int]] = (), keep: int | None = None) -> TreeBatch:
        """The next call: ``keep`` (a branch of the previous call, now part of the sequence), then
        ``chain`` (non-empty) and ``branches`` after it."""
        if not chain:
            raise ValueError("a decoder call needs at least one chain token")
        if keep is not None:
            start, end = self._spans[keep]
            self.live[start:end] = True
            self.position += end - start
        past, c = len(self.live), len(chain)
        q = c + sum(len(b) for b in branches)
        visible = np.zeros((q, past + q), bool)
        visible[:, :past] = self.live
        visible[:c, past : past + c] = np.tril(np.ones((c, c), bool))  # the chain: causal
        visible[c:, past : past + c] = True  # every branch sees the whole chain
        offsets, rows, spans, at = list(range(c)), [c - 1], [], c
        for b in branches:
            n = len(b)
            visible[at : at + n, past + at : past + at + n] = np.tril(np.ones((n, n), bool))
            offsets += range(c, c + n)
            rows.append(at + n - 1)
            spans.append((past + at, past + at + n))
            at += n
        positions = self.position + np.asarray(offsets, np.int64)
        self.live = np.concatenate([self.live, np.ones(c, bool), np.zeros(q - c, bool)])
        self.position += c
        self._spans = spans
        tokens = [*chain, *(t for b in branches for t in b)]
        return TreeBatch(tokens, positions, visible, rows, past)
