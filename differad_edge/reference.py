"""A registered good image of a product and what calibration learned about it.

Neutral: the store writes and loads references, engines prepare them; neither depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: ``Reference.metadata`` key of the golden thresholds a passed validation tuned: the store writes it
#: (from the validation it records), the golden engine reads it. Defined here, so neither of the two
#: depends on the other.
TUNED_KEY = "golden"


@dataclass
class Reference:
    """A registered good image of a product (plus what calibration learned about it).

    ``image`` is uint8 RGB. ``mean``/``spread`` are the per-pixel variation model (float32, HxWxC or
    HxW) built from several aligned good parts; ``care_mask`` is uint8 HxW, non-zero = inspect.
    """

    image: np.ndarray
    product_id: str = "adhoc"
    version: str = "0"
    care_mask: np.ndarray | None = None
    mean: np.ndarray | None = None
    spread: np.ndarray | None = None
    sha256: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def key(self) -> str:
        """Identity of the reference content, for caches (falls back to a content hash)."""
        if not self.sha256:
            from .fileio import sha256_bytes

            self.sha256 = sha256_bytes(np.ascontiguousarray(self.image).tobytes())
        return self.sha256


__all__ = ["TUNED_KEY", "Reference"]
