"""The card a model folder made by this SDK carries (``differad_model.json``).

Why: tools that judge a model's answers (export verification) must know when the answers mean
nothing. A random-weights factory model's boxes are noise, a memorized fixture's boxes are right
only on the pairs it learned; the card says which, and names those pairs. A checkpoint trained
elsewhere has no card and is taken at face value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError

MODEL_CARD = "differad_model.json"


@dataclass(frozen=True)
class ModelCard:
    """What a model folder says of its own answers."""

    random_weights: bool = False
    memorized: bool = False
    #: the pairs the model knows (``pairs.jsonl``, relative to the model folder), if any
    pairs: str | None = None

    def pairs_path(self, model_dir: Path) -> Path | None:
        return model_dir / self.pairs if self.pairs else None


def read_model_card(model_dir: Path) -> ModelCard | None:
    """The folder's card, None without one; a card that is not a JSON object is a typed error."""
    path = Path(model_dir) / MODEL_CARD
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelLoadError(f"model card {path} is unreadable ({e}); restore it or delete it") from e
    if not isinstance(raw, dict):
        raise ModelLoadError(f"model card {path} must be a JSON object, got {type(raw).__name__}")
    pairs = raw.get("pairs")
    return ModelCard(
        random_weights=raw.get("random_weights") is True,
        memorized=raw.get("memorized") is True,
        pairs=pairs if isinstance(pairs, str) and pairs else None,
    )
