"""The one answer parser (the authors' evaluation protocol, section 4) and the strict format check
used as the format reward.

Rules (the evaluation protocol, used to score any model's raw answers): look for a box inside
``<answer>…</answer>`` first (then, as a fallback, in the whole text); accept
``(x1,y1),(x2,y2)``, ``[x1,y1,x2,y2]``, ``[[x1,y1,x2,y2]]``, ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``
and a bare ``x1 y1 x2 y2``; keep the first *valid* box; nothing parsable -> invalid (IoU 0).

Training reads ``<answer>`` only (``parse_answer(text, answer_only=True)``): with the fallback a box
written inside ``<think>`` would earn the localization reward although the answer is unusable (the
authors' protocol reads ``<answer>`` only for reasoning models). The default stays the protocol's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .boxes import Box
from .coords import MODEL_SCALE
from .errors import BoxError
from .metrics import is_positive

_NUM = r"[-+]?\d+(?:\.\d+)?"
_PAREN = rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
_BRACKET = rf"\[\s*\[?\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]?\s*\]"
_PLAIN = rf"(?<![\w.\-+])({_NUM})\s+({_NUM})\s+({_NUM})\s+({_NUM})(?!\w|\.\d)"  # a sentence-final "." is fine
_BOX_PATTERNS = (re.compile(_PAREN), re.compile(_BRACKET), re.compile(_PLAIN))
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_STRICT_BOX = rf"(?:{_PAREN}|\[\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*\])"
_STRICT_THINK = re.compile(rf"^\s*<think>.*?</think>\s*<answer>\s*{_STRICT_BOX}\s*</answer>\s*$", re.DOTALL)
_STRICT_NOTHINK = re.compile(rf"^\s*(?:<think>\s*</think>\s*)?<answer>\s*{_STRICT_BOX}\s*</answer>\s*$", re.DOTALL)


@dataclass(frozen=True)
class ParsedAnswer:
    """Result of parsing one model answer. ``box`` is on the model scale (0-1000)."""

    box: Box | None
    valid: bool
    reason: str | None = None
    think: str | None = None

    @property
    def is_anomaly(self) -> bool:
        """A positive prediction: a valid, non-zero box (the F1 convention of the metrics)."""
        return is_positive(self.box, self.valid)


def _candidates(text: str) -> list[tuple[int, Box]]:
    found: list[tuple[int, Box]] = []
    for pattern in _BOX_PATTERNS:
        for m in pattern.finditer(text):
            try:
                found.append((m.start(), Box(*(float(g) for g in m.groups()))))
            except (BoxError, OverflowError, ValueError):  # a 309-digit number is inf: not a box (never raise)
                continue
    found.sort(key=lambda item: item[0])
    return found


def box_problem(box: Box, scale: float = MODEL_SCALE) -> str | None:
    """Why a model-scale box is not valid, or None. The zero box is valid (= no anomaly)."""
    if box.is_zero:
        return None
    coords = box.as_tuple()
    if min(coords) < 0 or max(coords) > scale:
        return f"coordinates {coords} outside 0..{scale:g}"
    if box.is_degenerate:
        return f"degenerate box {coords} (needs x1 < x2 and y1 < y2)"
    return None


def parse_answer(text: str | None, scale: float = MODEL_SCALE, answer_only: bool = False) -> ParsedAnswer:
    """Parse a model's raw answer into a model-scale box, never raising.

    ``answer_only=True`` (training rewards) reads the first ``<answer>`` region only: no ``<answer>``
    tag, or no valid box inside it, is an invalid answer. The default adds the protocol's fallback
    to the whole text (for scoring other models' raw answers).

    >>> parse_answer("<think>a scratch</think><answer>(100,200),(300,400)</answer>").box
    Box(x1=100.0, y1=200.0, x2=300.0, y2=400.0)
    >>> parse_answer("no idea").reason
    'no box found'
    """
    if not isinstance(text, str) or not text.strip():
        return ParsedAnswer(None, False, "empty output")
    think_m = _THINK.search(text)
    think = think_m.group(1).strip() if think_m else None
    answer_m = _ANSWER.search(text)
    regions = [answer_m.group(1)] if answer_m else []
    if not answer_only:
        regions.append(text)  # protocol: the <answer> first, then anywhere
    elif not regions:
        return ParsedAnswer(None, False, "no <answer> tag", think)
    first_problem: str | None = None
    for region in regions:
        for _, box in _candidates(region):
            problem = box_problem(box, scale)
            if problem is None:
                return ParsedAnswer(box, True, None, think)
            first_problem = first_problem or problem
    return ParsedAnswer(None, False, first_problem or "no box found", think)


def is_strict_format(text: str | None, require_think: bool = True) -> bool:
    """The paper's format check: ``<think>…</think><answer>box</answer>`` and nothing else.

    ``require_think=False`` accepts the no-think template's bare ``<answer>box</answer>``.

    >>> is_strict_format("<think>ok</think><answer>(0,0),(0,0)</answer>")
    True
    >>> is_strict_format("<answer>(0,0),(0,0)</answer>")
    False
    """
    if not isinstance(text, str):
        return False
    pattern = _STRICT_THINK if require_think else _STRICT_NOTHINK
    return pattern.match(text) is not None


def format_box(box: Box) -> str:
    """The answer syntax the model is trained to emit: ``(x1,y1),(x2,y2)`` in integers."""
    x1, y1, x2, y2 = (int(round(v)) for v in box.as_tuple())
    return f"({x1},{y1}),({x2},{y2})"
