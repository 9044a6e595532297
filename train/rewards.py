"""Rewards of DifferAD-R1 (paper III-B2) as plain TRL reward functions.

Every function has TRL's signature ``f(completions, solution, **kwargs) -> list[float]``: completions
are strings or conversational (a list of messages, the last one the model's answer); ``solution`` is
the dataset column with the ground-truth box on the 0-1000 model scale (``[x1, y1, x2, y2]``, the zero
box for a normal sample). Boxes are scored with the one IoU (``boxes.iou``) that evaluation uses.

Reading answers (training vs evaluation): the rewards read ``<answer>`` only
(``parse_answer(text, answer_only=True)``), as the authors do for reasoning models. The evaluation
protocol (``parse_answer`` default, ``differad eval``) falls back to the whole text so that other
models' raw answers can be scored; in training that fallback is a reward hack: ``<think>seen at
(10,10),(100,200)</think><answer>(5,5),(5,5)</answer>`` would earn R_loc for a box the answer never
gave. R_fmt accepts only ``<think>..</think><answer>box</answer>`` with *integer* coordinates in
0..1000 forming a box the parser accepts (no signs, no decimals, no degenerate or out-of-range box).

Normal-sample rule (code and metrics): ground truth zero box -> 1 if the prediction is the zero box,
else 0; a zero-box prediction on an anomalous sample -> 0; an invalid answer -> 0.

Variants (``reward.variant``) and how they differ from the authors' code:

============== ==================================================================================
``dclr``       Eq. 7 of the paper: IoU + delta if IoU >= tau, else IoU + (1 - IoU) lam S_cons.
``dclr_code``  the authors' released code: IoU + (1 - IoU) S_cons, no threshold, no lam.
``iou``        plain IoU (the textbook "IoU only" ablation).
``iou_authors``  the authors' "IoU only" ablation: IoU >= tau -> IoU, below tau IoU / (1 + |dA| / A_gt)
               (an area-mismatch penalty, so it is not plain IoU).
``center``     S_cons alone (Eq. 4-6) with the normal-sample rule.
``center_authors``  the authors' "center only" ablation: as ``center``, but an unreadable answer on a
               normal sample gets 1.0 (their code scores "no box" as "no anomaly").
============== ==================================================================================

The authors' run settings (KL beta = 0.04, per-sequence-mean loss ``loss_type: grpo``, masking of
truncated completions) are the preset ``train/configs/grpo_authors.yaml``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from differad_edge.boxes import Box, center_distance, iou
from differad_edge.coords import MODEL_SCALE
from differad_edge.errors import BoxError, ConfigError
from differad_edge.parsing import is_strict_format, parse_answer

RewardFunc = Callable[..., list[float]]
Variant = Literal["dclr", "dclr_code", "iou", "iou_authors", "center", "center_authors"]
VARIANTS: tuple[str, ...] = ("dclr", "dclr_code", "iou", "iou_authors", "center", "center_authors")
#: The box inside ``<answer>`` that R_fmt accepts: unsigned integers without leading zeros (as the answer
#: grammar of the engine), as ``(x1,y1),(x2,y2)`` or ``[x1,y1,x2,y2]``.
_INT = r"\s*(0|[1-9]\d{0,3})\s*"
_INT_BOX = re.compile(rf"^\s*(?:\({_INT},{_INT}\)\s*,?\s*\({_INT},{_INT}\)|\[{_INT},{_INT},{_INT},{_INT}\])\s*$")
_ANSWER_BODY = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)

#: Guards the divisions of Eq. 4-5 (boxes on the 0-1000 grid, so 1e-6 is far below one unit).
EPS = 1e-6


@dataclass(frozen=True)
class DCLRParams:
    """Parameters of Eq. 6-7; defaults from the paper's Table X.

    ``delta`` is the paper's "small bounded adjustment" for IoU >= tau. Default 0: the reward is then
    IoU itself above tau, and drops by (1 - tau) * lam * S_cons when IoU crosses tau from below
    (at most 0.21 with the defaults). ``delta = (1 - tau) * lam`` removes that drop for a perfectly
    consistent box.
    """

    alpha: float = 0.6
    lam: float = 0.3
    tau: float = 0.3
    delta: float = 0.0

    def __post_init__(self) -> None:
        for name, lo, hi in (("alpha", 0.0, 1.0), ("lam", 0.0, 1.0), ("tau", 0.0, 1.0), ("delta", 0.0, 1.0)):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
                raise ConfigError(f"DCLR {name}={v!r} is out of range; expected a number in [{lo}, {hi}]")


def _as_box(solution: Any) -> Box:
    if isinstance(solution, Box):
        return solution
    try:
        return Box.from_seq(solution)
    except (TypeError, ValueError, BoxError) as e:
        raise BoxError(f"solution {solution!r} is not a box; expected [x1, y1, x2, y2] on the 0-1000 scale") from e


def completion_text(completion: Any) -> str:
    """The answer text of one completion, string or conversational (TRL passes both forms)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else completion[-1]
        if isinstance(content, str):
            return content
        if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
            return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def consistency(pred: Box, gt: Box, alpha: float = 0.6) -> float:
    """S_cons of Eq. 6: alpha * s_center (Eq. 4) + (1 - alpha) * s_scale (Eq. 5).

    Graded even when the boxes do not overlap, which is what gives GRPO a signal where IoU is flat 0.

    >>> consistency(Box(0, 0, 10, 10), Box(20, 0, 30, 10))  # centers a diagonal apart, same size
    0.4
    """
    norm = max(pred.diagonal, gt.diagonal, 1.0) + EPS
    s_center = 1.0 - min(1.0, center_distance(pred, gt) / norm)
    s_scale = 1.0 - min(1.0, abs(pred.area - gt.area) / (gt.area + EPS))
    return alpha * s_center + (1.0 - alpha) * s_scale


def _normal_rule(pred: Box | None, gt: Box) -> float | None:
    """The reward fixed by the normal-sample rule, or None when the box must be scored."""
    if pred is None:
        return 0.0
    if gt.is_zero:
        return 1.0 if pred.is_zero else 0.0
    if pred.is_zero:
        return 0.0
    return None


def localization_reward(
    pred: Box | None, gt: Box, variant: Variant = "dclr", params: DCLRParams = DCLRParams()
) -> float:
    """R_loc of one prediction (``None`` = invalid answer) against a model-scale ground truth.

    ``dclr``: Eq. 7 (IoU + delta if IoU >= tau, else IoU + (1 - IoU) * lam * S_cons);
    ``dclr_code``: the authors' code, IoU + (1 - IoU) * S_cons with no threshold;
    ``iou``: IoU only; ``center``: S_cons only (the ablations of Table VIII); ``iou_authors`` and
    ``center_authors``: those ablations as the authors' code computes them (module docstring).

    >>> localization_reward(Box(0, 0, 10, 10), Box(20, 0, 30, 10))  # 0 + (1 - 0) * 0.3 * 0.4
    0.12
    >>> localization_reward(Box(0, 0, 10, 10), Box(0, 0, 0, 0))
    0.0
    """
    if variant == "center_authors" and pred is None and gt.is_zero:
        return 1.0  # the authors' quirk: an unreadable answer on a normal sample counts as "no anomaly"
    fixed = _normal_rule(pred, gt)
    if fixed is not None:
        return fixed
    assert pred is not None
    if variant == "iou":
        return iou(pred, gt)
    if variant == "iou_authors":
        overlap = iou(pred, gt)
        if overlap >= params.tau:
            return overlap
        return overlap / (1.0 + abs(pred.area - gt.area) / (gt.area + EPS))
    if variant in ("center", "center_authors"):
        return consistency(pred, gt, params.alpha)
    overlap = iou(pred, gt)
    if variant == "dclr_code":
        return overlap + (1.0 - overlap) * consistency(pred, gt, params.alpha)
    if variant == "dclr":
        if overlap >= params.tau:
            return overlap + params.delta
        return overlap + (1.0 - overlap) * params.lam * consistency(pred, gt, params.alpha)
    raise ConfigError(f"unknown reward variant {variant!r}; expected one of {', '.join(VARIANTS)}")


def _score_all(
    completions: Sequence[Any], solution: Sequence[Any], variant: Variant, params: DCLRParams
) -> list[float]:
    if len(completions) != len(solution):
        raise ConfigError(f"got {len(completions)} completions but {len(solution)} solutions; expected one each")
    out = []
    for completion, sol in zip(completions, solution, strict=True):
        parsed = parse_answer(completion_text(completion), answer_only=True)  # <answer> only: no <think> hack
        out.append(localization_reward(parsed.box if parsed.valid else None, _as_box(sol), variant, params))
    return out


def make_localization_reward(variant: Variant = "dclr", **params: float) -> RewardFunc:
    """A TRL reward function for one variant, named after it so TRL's logs say which one ran.

    >>> make_localization_reward("dclr", tau=0.5)(["<answer>(0,0),(10,10)</answer>"], [[0, 0, 10, 10]])
    [1.0]
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown reward variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    p = DCLRParams(**params)

    def reward(completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float]:
        return _score_all(completions, solution, variant, p)

    reward.__name__ = reward.__qualname__ = f"{variant}_reward"
    reward.__doc__ = f"R_loc ({variant}) with {p}."
    reward.params = p  # type: ignore[attr-defined]
    reward.variant = variant  # type: ignore[attr-defined]
    reward.max_value = max_reward(variant, p)  # type: ignore[attr-defined]
    return reward


def max_reward(variant: Variant, params: DCLRParams = DCLRParams()) -> float:
    """The highest R_loc a variant gives (a perfect box): resampling never regenerates a group solved at it."""
    return 1.0 + params.delta if variant == "dclr" else 1.0


def iou_reward(completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float]:
    """IoU with the normal-sample rule (ablation "IoU only").

    >>> iou_reward(["<answer>(0,0),(10,10)</answer>"], [[5, 0, 15, 10]])
    [0.3333333333333333]
    """
    return _score_all(completions, solution, "iou", DCLRParams())


def center_reward(completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float]:
    """S_cons alone with the normal-sample rule (ablation "center-based only").

    >>> center_reward(["<answer>(0,0),(10,10)</answer>"], [[20, 0, 30, 10]])
    [0.4]
    """
    return _score_all(completions, solution, "center", DCLRParams())


def dclr_reward(completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float]:
    """DCLR (Eq. 7) with the defaults alpha=0.6, lam=0.3, tau=0.3, delta=0; see ``make_localization_reward``.

    >>> dclr_reward(["<answer>(0,0),(10,10)</answer>", "<answer>(0,0),(0,0)</answer>"], [[20, 0, 30, 10], [0, 0, 0, 0]])
    [0.12, 1.0]
    """
    return _score_all(completions, solution, "dclr", DCLRParams())


def dclr_code_reward(completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float]:
    """The authors' code variant: IoU + (1 - IoU) * S_cons, no threshold.

    >>> dclr_code_reward(["<answer>(0,0),(10,10)</answer>"], [[20, 0, 30, 10]])
    [0.4]
    """
    return _score_all(completions, solution, "dclr_code", DCLRParams())


def iou_authors_reward(completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float]:
    """The authors' "IoU only" ablation: below tau the IoU is divided by 1 + |dA| / A_gt.

    >>> round(iou_authors_reward(["<answer>(0,0),(10,10)</answer>"], [[5, 0, 25, 10]])[0], 6)  # IoU 1/5, dA/A 1/2
    0.133333
    """
    return _score_all(completions, solution, "iou_authors", DCLRParams())


def center_authors_reward(completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float]:
    """The authors' "center only" ablation: S_cons, and 1.0 for an unreadable answer on a normal sample.

    >>> center_authors_reward(["no idea", "no idea"], [[0, 0, 0, 0], [20, 0, 30, 10]])
    [1.0, 0.0]
    """
    return _score_all(completions, solution, "center_authors", DCLRParams())


for _f in (iou_reward, center_reward, dclr_reward, dclr_code_reward, iou_authors_reward, center_authors_reward):
    _f.max_value = 1.0  # type: ignore[attr-defined]


def is_integer_answer(text: str) -> bool:
    """The ``<answer>`` holds one box of unsigned integers in 0..1000 that the parser accepts as valid."""
    m = _ANSWER_BODY.search(text)
    if m is None:
        return False
    box = _INT_BOX.match(m.group(1))
    if box is None or any(int(v) > MODEL_SCALE for v in box.groups() if v is not None):
        return False
    return parse_answer(text, answer_only=True).valid


def format_reward(completions: Sequence[Any], require_think: bool = True, **kwargs: Any) -> list[float]:
    """R_fmt: 1 for exactly ``<think>...</think><answer>box</answer>`` with an integer 0..1000 box, else 0.

    >>> format_reward(["<think>a dent</think><answer>(1,2),(30,40)</answer>", "(1,2),(30,40)",
    ...                "<think>a dent</think><answer>(-5,10),(100,200)</answer>"])
    [1.0, 0.0, 0.0]
    """
    out = []
    for c in completions:
        text = completion_text(c)
        out.append(1.0 if is_strict_format(text, require_think=require_think) and is_integer_answer(text) else 0.0)
    return out


def make_format_reward(require_think: bool = True) -> RewardFunc:
    """``format_reward`` for a template: ``require_think=False`` accepts the no-think ``<answer>box</answer>``."""

    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return format_reward(completions, require_think=require_think)

    reward.__name__ = reward.__qualname__ = "format_reward"
    reward.max_value = 1.0  # type: ignore[attr-defined]
    return reward


def make_reward_funcs(
    variant: Variant = "dclr",
    require_think: bool = True,
    format_weight: float = 1.0,
    loc_weight: float = 1.0,
    **params: float,
) -> tuple[list[RewardFunc], list[float]]:
    """Reward functions and weights for TRL: R = w_fmt * R_fmt + w_loc * R_loc (paper: both 1).

    ``DifferadGRPOTrainer`` finds R_loc by the localization reward's name (``<variant>_reward``).
    """
    funcs = [make_format_reward(require_think), make_localization_reward(variant, **params)]
    return funcs, [float(format_weight), float(loc_weight)]
