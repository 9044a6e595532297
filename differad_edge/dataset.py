"""The pairs and predictions JSONL formats (issue 2, section 3), so that any model's output can be
scored against any pairs file with the same protocol.

Pairs, one JSON object per line::

    {"id": "0007", "reference": "images/0007_ref.png", "target": "images/0007_tgt.png",
     "box": [12, 40, 57, 88], "category": "pcb", "subset": "synthetic", "mask": "masks/0007.png"}

``box`` is in target pixels ([0, 0, 0, 0] = normal); paths are relative to the JSONL file;
``subset``, ``mask`` and ``id`` are optional (``id`` defaults to the ``target`` string).

Predictions, one JSON object per line: ``id`` plus either ``box`` (target pixels; ``null`` or
[0, 0, 0, 0] = no anomaly; optional ``valid``) or ``text`` (a raw model answer, parsed with
``parsing.parse_answer``; its box is on the 0-1000 model scale). ``box`` wins when both are given
(it is what ``differad inspect --json`` prints after mapping through alignment).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .boxes import Box
from .coords import from_model_scale, to_model_scale
from .errors import BoxError, DatasetError, ImageError
from .fileio import atomic_write_text
from .images import MAX_PIXELS, image_size, load_image
from .metrics import Record
from .parsing import parse_answer

DEFAULT_SUBSET = "default"


@dataclass(frozen=True)
class Pair:
    """One reference/target pair; paths are absolute once read (relative ones resolve against the file)."""

    id: str
    reference: Path
    target: Path
    box: Box
    category: str
    subset: str = DEFAULT_SUBSET
    mask: Path | None = None

    @property
    def is_normal(self) -> bool:
        return self.box.is_zero


@dataclass
class PairsFile:
    """Pairs read from one file, plus one message per skipped line (``"line N: why"``)."""

    path: Path
    pairs: list[Pair]
    errors: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.errors)


#: A JSONL file above this size is not a dataset (one line per pair: a few hundred bytes each).
MAX_JSONL_BYTES = 2 << 30


def _read_lines(path: str | os.PathLike, what: str) -> tuple[Path, list[bytes]]:
    """The file's raw lines: each is decoded on its own, so one invalid UTF-8 byte costs one line,
    not the file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} file not found: {path}; expected a JSONL file with one object per line")
    try:
        if path.stat().st_size > MAX_JSONL_BYTES:
            raise DatasetError(f"{what} file {path} is over {MAX_JSONL_BYTES} bytes; not a JSONL dataset")
        return path, path.read_bytes().splitlines()
    except OSError as e:
        raise DatasetError(f"cannot read {what} file {path}: {e}; expected UTF-8 JSONL") from e


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})") from e


def _json_object(line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from e
    except RecursionError as e:
        raise ValueError("JSON nested too deeply") from e
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ValueError(f"not valid JSON ({str(e).splitlines()[0][:120]})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _pixel_box(value: Any) -> Box:
    """A ground-truth/prediction box in pixels: 4 finite numbers, non-negative, zero or non-degenerate."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"box must be [x1, y1, x2, y2] numbers, got {_short(value)}")
    try:
        box = Box.from_seq(value)
    except (BoxError, OverflowError) as e:  # a 400-digit integer does not fit a float
        raise ValueError(f"box coordinates must be finite numbers, got {_short(value)}") from e
    if min(box.as_tuple()) < 0:
        raise ValueError(f"box {_short(value)} has negative coordinates")
    if not box.is_zero and box.is_degenerate:
        raise ValueError(f"box {_short(value)} is degenerate (needs x1 < x2 and y1 < y2; [0,0,0,0] = normal)")
    return box


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` cut short: a line with a 400-digit number must not become a 400-digit message."""
    try:
        text = repr(value)
    except ValueError:  # int too large to print
        text = f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _inside_image(box: Box, target: Path) -> None:
    """A ground-truth box must lie inside its target image (item 16: it was scored without a word)."""
    if box.is_zero:
        return
    try:
        w, h = image_file_size(target)
    except ImageError:
        return  # the image itself is judged where it is read
    x1, y1, x2, y2 = box.as_tuple()
    if x2 > w or y2 > h:
        raise ValueError(f"box {box.as_int_list()} lies outside the {w}x{h} target image {target.name}")


def _resolve(base: Path, value: Any, key: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"'{key}' must be a non-empty path string, got {_short(value)}")
    p = Path(value)
    return p if p.is_absolute() else base / p


def _parse_pair(obj: dict[str, Any], base: Path, check_files: bool) -> Pair:
    missing = [k for k in ("reference", "target", "box", "category") if k not in obj]
    if missing:
        raise ValueError(f"missing key(s) {', '.join(missing)}")
    ref = _resolve(base, obj["reference"], "reference")
    tgt = _resolve(base, obj["target"], "target")
    mask = None if obj.get("mask") in (None, "") else _resolve(base, obj["mask"], "mask")
    if check_files:
        for key, p in (("reference", ref), ("target", tgt), ("mask", mask)):
            if p is not None and not p.is_file():
                raise ValueError(f"{key} file not found: {p}")
    category = obj["category"]
    if not isinstance(category, str) or not category:
        raise ValueError(f"'category' must be a non-empty string, got {_short(category)}")
    subset = obj.get("subset", DEFAULT_SUBSET)
    if not isinstance(subset, str) or not subset:
        raise ValueError(f"'subset' must be a non-empty string, got {_short(subset)}")
    pid = obj.get("id", obj["target"])
    if not isinstance(pid, (str, int)) or isinstance(pid, bool):
        raise ValueError(f"'id' must be a string or integer, got {_short(pid)}")
    box = _pixel_box(obj["box"])
    if check_files:
        _inside_image(box, tgt)
    return Pair(str(pid), ref, tgt, box, category, subset, mask)


def read_pairs(path: str | os.PathLike, check_files: bool = True) -> PairsFile:
    """Read a pairs JSONL file, skipping (and explaining) every bad line instead of aborting.

    Bad lines: invalid JSON, missing keys, malformed boxes, duplicate ids and — with
    ``check_files`` — images or masks that do not exist. A missing/unreadable file raises
    ``DatasetError``; blank lines and lines starting with ``#`` are ignored.
    """
    path, lines = _read_lines(path, "pairs")
    base = path.parent
    pairs: list[Pair] = []
    errors: list[str] = []
    seen: set[str] = set()
    for no, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.lstrip().startswith(b"#"):
            continue
        try:
            pair = _parse_pair(_json_object(_text(raw)), base, check_files)
            if pair.id in seen:
                raise ValueError(f"duplicate id {pair.id!r} (give each pair a unique 'id')")
        except ValueError as e:
            errors.append(f"line {no}: {e}")
            continue
        seen.add(pair.id)
        pairs.append(pair)
    return PairsFile(path, pairs, errors)


def _relative(p: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(Path(p).resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return Path(p).resolve().as_posix()


def pair_to_json(pair: Pair, base: Path) -> dict[str, Any]:
    """One pairs-file line (paths relative to ``base``, the folder of the JSONL file)."""
    out: dict[str, Any] = {
        "id": pair.id,
        "reference": _relative(pair.reference, base),
        "target": _relative(pair.target, base),
        "box": pair.box.as_int_list(),
        "category": pair.category,
        "subset": pair.subset,
    }
    if pair.mask is not None:
        out["mask"] = _relative(pair.mask, base)
    return out


def write_pairs(path: str | os.PathLike, pairs: Iterable[Pair]) -> Path:
    """Write pairs atomically as JSONL with paths relative to the file; returns the path."""
    path = Path(path)
    base = path.parent
    base.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(pair_to_json(p, base), sort_keys=False) for p in pairs]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


@dataclass(frozen=True)
class Prediction:
    """One model output. ``space`` says the box's units: target ``"pixel"`` or ``"model"`` (0-1000)."""

    box: Box | None
    valid: bool
    text: str | None = None
    reason: str | None = None
    space: Literal["pixel", "model"] = "pixel"
    #: image-level anomaly score (``differad inspect --json`` writes it), for AUROC / F1-max
    score: float | None = None
    #: ``OK`` / ``NG`` / ``NOT_INSPECTED`` where the producer judged the frame
    verdict: str | None = None
    #: the target image the prediction was made on (matched to a pair when the ids differ)
    target: str | None = None

    def pixel_box(self, width: int, height: int) -> Box | None:
        """The box in target pixels (model-scale boxes mapped through ``coords``)."""
        if self.box is None or self.space == "pixel":
            return self.box
        return from_model_scale(self.box, width, height)

    def box_on(self, target: str | os.PathLike) -> Box | None:
        """The box in pixels of the ``target`` image file, reading its size only for a model-scale box."""
        if self.box is None or self.space == "pixel" or self.box.is_zero:
            return self.box
        return self.pixel_box(*image_file_size(target))


class Predictions(dict):
    """``id -> Prediction``, plus one message per skipped line in ``errors``."""

    def __init__(self, items: Mapping[str, Prediction] | None = None, errors: list[str] | None = None):
        super().__init__(items or {})
        self.errors: list[str] = list(errors or [])


def _parse_prediction(obj: dict[str, Any]) -> tuple[str, Prediction]:
    if "id" not in obj:
        raise ValueError("missing key 'id'")
    pid = obj["id"]
    if not isinstance(pid, (str, int)) or isinstance(pid, bool):
        raise ValueError(f"'id' must be a string or integer, got {_short(pid)}")
    text = obj.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"'text' must be a string, got {type(text).__name__}")
    extra = _judgement(obj)
    if "box" in obj:
        valid = obj.get("valid", True)
        if not isinstance(valid, bool):
            raise ValueError(f"'valid' must be true or false, got {_short(valid)}")
        if extra["verdict"] == "NOT_INSPECTED":
            valid = False  # a frame nobody judged scores as an invalid answer, whatever else the line says
        box = None if obj["box"] is None else _pixel_box(obj["box"])
        reason = obj.get("message") or obj.get("reason")
        return str(pid), Prediction(box, valid, text, None if reason is None else str(reason), "pixel", **extra)
    if "text" in obj:
        parsed = parse_answer(text)
        return str(pid), Prediction(parsed.box, parsed.valid, text, parsed.reason, "model", **extra)
    raise ValueError("needs 'box' (target pixels) or 'text' (a raw model answer)")


_VERDICTS = ("OK", "NG", "NOT_INSPECTED")


def _judgement(obj: dict[str, Any]) -> dict[str, Any]:
    """The optional ``score``, ``verdict`` and ``target`` of a prediction line, type-checked."""
    score = obj.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(float(score)):
            raise ValueError(f"'score' must be a finite number, got {_short(score)}")
        score = float(score)
    verdict = obj.get("verdict")
    if verdict is not None and verdict not in _VERDICTS:
        raise ValueError(f"'verdict' must be one of {', '.join(_VERDICTS)}, got {_short(verdict)}")
    target = obj.get("target")
    if target is not None and not isinstance(target, str):
        raise ValueError(f"'target' must be a path string, got {_short(target)}")
    return {"score": score, "verdict": verdict, "target": target}


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read a predictions JSONL file into ``{id: Prediction}``; bad lines are skipped and listed in ``.errors``.

    A later line with the same id replaces the earlier one (and is reported).
    """
    path, lines = _read_lines(path, "predictions")
    out = Predictions()
    for no, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.lstrip().startswith(b"#"):
            continue
        try:
            pid, pred = _parse_prediction(_json_object(_text(raw)))
        except ValueError as e:
            out.errors.append(f"line {no}: {e}")
            continue
        if pid in out:
            out.errors.append(f"line {no}: duplicate id {_short(pid)}, the later line wins")
        out[pid] = pred
    return out


def image_file_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header; decodes (with the SDK's checks and typed
    errors) only when the header cannot be read or claims an absurd size."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image file not found: {p}")
    try:
        import warnings

        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                w, h = int(im.size[0]), int(im.size[1])
        if 0 < w * h <= MAX_PIXELS:
            return w, h
    except Exception:  # unreadable header: the decoder below gives the typed error
        pass
    return image_size(load_image(p))


def pair_box_model_scale(pair: Pair, size: tuple[int, int] | None = None) -> Box:
    """The pair's pixel box on the 0-1000 model scale of its target image (training labels).

    ``size=(w, h)`` skips reading the target's header.
    """
    w, h = size if size is not None else image_file_size(pair.target)
    return to_model_scale(pair.box, w, h)


def to_records(pairs: Iterable[Pair], predictions: Mapping[str, Prediction]) -> tuple[list[Record], list[str]]:
    """Join pairs with predictions into metric records (boxes in target pixels).

    A pair without a prediction counts as an invalid output (IoU 0), as the protocol scores an
    unparsable answer; its id is returned in the second list so callers can report it.
    """
    records: list[Record] = []
    missing: list[str] = []
    for p in pairs:
        pred = predictions.get(p.id)
        if pred is None:
            missing.append(p.id)
            records.append(Record(None, p.box, False, p.category, p.subset, p.id))
            continue
        try:
            box = pred.box_on(p.target)
        except ImageError as e:
            raise DatasetError(f"pair {p.id!r}: cannot read the target's size to map the model box: {e}") from e
        records.append(Record(box, p.box, pred.valid, p.category, p.subset, p.id))
    return records, missing


__all__ = [
    "DEFAULT_SUBSET",
    "Pair",
    "PairsFile",
    "Prediction",
    "Predictions",
    "image_file_size",
    "pair_box_model_scale",
    "pair_to_json",
    "read_pairs",
    "read_predictions",
    "to_records",
    "write_pairs",
]
