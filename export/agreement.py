"""Agreement between the source model and a bundle on the same pairs: tokens, boxes, decisions.

Plain functions so the numbers in a manifest can be recomputed from stored outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from differad_edge.boxes import Box, iou
from differad_edge.metrics import is_positive
from differad_edge.parsing import parse_answer


class Thresholds(BaseModel):
    """Minimum agreement a quantized bundle must reach (fp32 bundles must match tokens exactly).

    The gate is what a deployment acts on: the boxes (mean IoU) and the decisions. Token agreement
    is reported; it gates only when set: under the answer grammar two answers that differ in one
    early digit share few tokens although their boxes nearly coincide. Defaults measured on the
    memorized fixture model (issue 17/18, ``bench/RESULTS.md``).
    """

    model_config = ConfigDict(extra="forbid")

    token_agreement: float | None = Field(
        None, ge=0, le=1, description="mean share of matching greedy tokens per pair (None: reported only)"
    )
    box_iou: float = Field(0.9, ge=0, le=1, description="mean IoU between source and bundle boxes")
    decision_agreement: float = Field(0.95, ge=0, le=1, description="share of identical anomaly/OK decisions")


def token_agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """Share of positions, over the longer sequence, where two greedy decodes agree before diverging.

    >>> token_agreement([1, 2, 3, 4], [1, 2, 9, 4])
    0.5
    >>> token_agreement([], [])
    1.0
    """
    n = max(len(a), len(b))
    if n == 0:
        return 1.0
    same = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        same += 1
    return same / n


def answer_box(text: str) -> Box | None:
    """The model-scale box of an answer; ``None`` when it is invalid (no box)."""
    parsed = parse_answer(text)
    return parsed.box if parsed.valid else None


def box_agreement(a: Box | None, b: Box | None) -> float:
    """IoU of two answers' boxes; two zero boxes or two invalid answers agree fully.

    >>> box_agreement(Box(0, 0, 10, 10), Box(0, 0, 10, 5))
    0.5
    >>> box_agreement(None, None)
    1.0
    """
    if a is None or b is None:
        return float(a is None and b is None)
    if a.is_zero or b.is_zero:
        return float(a.is_zero and b.is_zero)
    return iou(a, b)


def decision(box: Box | None) -> str:
    """``anomaly`` for a valid non-zero box, ``ok`` for the zero box, ``invalid`` otherwise."""
    if box is None:
        return "invalid"
    return "anomaly" if is_positive(box) else "ok"


@dataclass
class Agreement:
    """Aggregate agreement of one verification run (stored in the manifest)."""

    pairs: int
    exact_token_match: float
    token_agreement: float
    box_iou: float
    decision_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(source: Sequence[tuple[list[int], str]], bundle: Sequence[tuple[list[int], str]]) -> Agreement:
    """Aggregate per-pair (tokens, text) of the source model and the bundle."""
    if len(source) != len(bundle) or not source:
        raise ValueError("source and bundle outputs must be non-empty and of equal length")
    n = len(source)
    tok = [token_agreement(s[0], b[0]) for s, b in zip(source, bundle, strict=True)]
    boxes = [(answer_box(s[1]), answer_box(b[1])) for s, b in zip(source, bundle, strict=True)]
    return Agreement(
        pairs=n,
        exact_token_match=sum(list(s[0]) == list(b[0]) for s, b in zip(source, bundle, strict=True)) / n,
        token_agreement=sum(tok) / n,
        box_iou=sum(box_agreement(a, b) for a, b in boxes) / n,
        decision_agreement=sum(decision(a) == decision(b) for a, b in boxes) / n,
    )


def failures(agreement: Agreement, mode: str, thresholds: Thresholds) -> list[str]:
    """Missed thresholds as readable lines; fp32 requires identical greedy tokens on every pair."""
    if mode == "fp32":
        if agreement.exact_token_match < 1.0:
            return [
                f"fp32 bundle must give identical greedy tokens, but only {agreement.exact_token_match:.0%} "
                "of pairs matched"
            ]
        return []
    out = []
    for name in ("box_iou", "decision_agreement", "token_agreement"):
        value, need = getattr(agreement, name), getattr(thresholds, name)
        if need is not None and value < need:
            out.append(f"{name} {value:.3f} < threshold {need:.3f}")
    return out
