"""What an inspection concludes: ``OK``, ``NG`` or ``NOT_INSPECTED`` (with a reason), and the defects.

An inspection system must never be silently wrong: a frame that could not be judged (not aligned,
unusable image, unparsable model answer, ...) is ``NOT_INSPECTED`` with a reason code from a fixed
set and a human message, and never reads as a good part. ``decide_verdict`` is the one rule that
turns what an engine found into a verdict; every edge (CLI, ROS, calibration, metrics) reads
``Detection.verdict`` instead of re-deriving it from boxes, flags or ``None``.

This module is neutral: engines, the store, the inspector and the edges import it; it imports only
``boxes``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .boxes import Box


class Verdict(str, enum.Enum):
    """The outcome a cell controller acts on (see the README's verdict table)."""

    OK = "OK"  #: inspected, no defect: pass the part
    NG = "NG"  #: inspected, at least one defect: reject the part
    NOT_INSPECTED = "NOT_INSPECTED"  #: not judged (see ``Reason``): never pass the part on this result

    def __str__(self) -> str:
        return self.value


class Reason(str, enum.Enum):
    """Why a frame was NOT_INSPECTED. A fixed set, so a controller or a dashboard can switch on it."""

    ALIGNMENT_FAILED = "alignment_failed"  #: frame cannot be registered onto the reference (wrong part, empty station)
    PARTIAL_VIEW = (
        "partial_view"  #: the registered frame covers too little of the reference (cropped, zoomed, part out of view)
    )
    IMAGE_QUALITY = "image_quality"  #: blurred, over- or under-exposed frame
    CHANNEL_MISMATCH = "channel_mismatch"  #: mono frame vs colour reference (or reverse) and configured to refuse
    SIZE_MISMATCH = "size_mismatch"  #: frame size does not fit the reference (alignment off), or too few pixels
    NO_REFERENCE = "no_reference"  #: unknown product / view or no active reference version
    ENGINE_ERROR = "engine_error"  #: the engine failed on this frame
    INVALID_ANSWER = "invalid_answer"  #: the model's answer holds no valid box
    TIMEOUT = "timeout"  #: no frame arrived in time (triggered inspection)
    BAD_FRAME = "bad_frame"  #: the frame itself cannot be decoded (encoding, truncated data)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, eq=False)
class Defect:
    """One defect: ``box`` in the pixels of the image it was found on, ``score`` in [0, 1], ``area`` in
    pixels (the deviating pixels where the engine has a mask, else the box area), ``mask`` (bool, the
    box's crop) where the engine has one."""

    box: Box
    score: float
    area: float
    mask: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"box": self.box.as_int_list(), "score": round(float(self.score), 6), "area": round(float(self.area), 1)}


def decide_verdict(defects: list[Defect], not_inspected: Reason | None) -> Verdict:
    """The one rule: a reason not to judge wins; otherwise any defect is NG; otherwise OK."""
    if not_inspected is not None:
        return Verdict.NOT_INSPECTED
    return Verdict.NG if defects else Verdict.OK


@dataclass
class Detection:
    """One engine answer on one image.

    ``defects`` are ranked by score (best first), boxes in the pixels of the image given to the
    engine (the inspector maps them to frame pixels). ``score`` is the image-level anomaly score
    (for AUROC / F1-max), ``message`` says why a frame was not inspected (or what was noted, e.g. a
    channel-layout mismatch compared in gray; ``notes`` lists those). ``anomaly_map`` is the
    per-pixel deviation in units of the tolerance (1.0 = at the tolerance), only where requested.
    """

    defects: list[Defect] = field(default_factory=list)
    score: float = 0.0
    engine: str = ""
    not_inspected: Reason | None = None
    message: str | None = None
    text: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    anomaly_map: np.ndarray | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def refuse(
        cls,
        reason: Reason,
        message: str,
        *,
        engine: str = "",
        text: str | None = None,
        score: float = 0.0,
        timings_ms: dict[str, float] | None = None,
    ) -> Detection:
        """A NOT_INSPECTED detection: nothing is claimed about the part."""
        return cls(
            [],
            float(score),
            engine,
            not_inspected=Reason(reason),
            message=message,
            text=text,
            timings_ms=dict(timings_ms or {}),
        )

    @property
    def verdict(self) -> Verdict:
        return decide_verdict(self.defects, self.not_inspected)

    @property
    def box(self) -> Box | None:
        """The top defect's box (the paper's single-anomaly protocol), ``None`` when there is none."""
        return self.defects[0].box if self.defects else None

    @property
    def anomaly(self) -> bool:
        return self.verdict is Verdict.NG

    @property
    def valid(self) -> bool:
        """The frame was judged (OK or NG)."""
        return self.verdict is not Verdict.NOT_INSPECTED

    def to_json(self) -> dict[str, Any]:
        verdict = self.verdict
        out: dict[str, Any] = {
            "verdict": verdict.value,
            "reason": None if self.not_inspected is None else self.not_inspected.value,
            "anomaly": verdict is Verdict.NG,
            "box": self.box.as_int_list() if self.box is not None else None,
            "defects": [d.to_json() for d in self.defects],
            "score": round(float(self.score), 6),
            "valid": verdict is not Verdict.NOT_INSPECTED,
            "engine": self.engine,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }
        if self.message is not None:
            out["message"] = self.message
        if self.notes:
            out["notes"] = list(self.notes)
        if self.text is not None:
            out["text"] = self.text
        return out


__all__ = ["Defect", "Detection", "Reason", "Verdict", "decide_verdict"]
