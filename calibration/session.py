"""A capture session: the frames collected for one product, their split and their gate verdicts.

Layout of ``SESSION_DIR``::

    session.json        product, source, split and verdict per frame, sha256 of every file
    frames/000000.png   lossless copies of the captured frames

Every few frames one is *held out* (``split="holdout"``): it never shapes the reference and serves
``validate`` as an unseen good part, which is what measures the false-alarm rate honestly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from differad_edge.errors import CalibrationError, ImageError
from differad_edge.fileio import atomic_write_json, sha256_file
from differad_edge.images import load_image, save_image

from .config import GateConfig
from .gates import GateReport, evaluate_gates
from .sources import Frame, collect_frames, describe_source

SESSION_FILE = "session.json"
FORMAT_VERSION = 1


@dataclass
class SessionFrame:
    name: str
    file: str
    split: str  # "build" | "holdout"
    sha256: str
    verdict: dict[str, Any] = field(default_factory=dict)
    excluded: bool = False  # left out by the engineer (station: exclude / re-include); the verdict is kept

    @property
    def accepted(self) -> bool:
        return bool(self.verdict.get("accepted", False)) and not self.excluded


@dataclass
class CaptureProgress:
    """Where a capture stands, for a live line: "7/15 captured, last rejected: blurred or no texture"."""

    count: int
    total: int | None
    name: str
    verdict: Any  # gates.FrameVerdict of the newest frame, judged against the frames before it
    accepted: int = 0
    last_rejected: str | None = None
    last_rejected_now: bool = False

    def line(self) -> str:
        of = f"/{self.total}" if self.total else ""
        tail = f", last rejected: {self.last_rejected}" if self.last_rejected else ""
        return f"{self.count}{of} captured, {self.accepted} accepted so far{tail}"


@dataclass
class Session:
    root: Path
    product_id: str
    source: str
    frames: list[SessionFrame]
    gates: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0

    def select(self, split: str, accepted_only: bool = True) -> list[SessionFrame]:
        return [f for f in self.frames if f.split == split and (f.accepted or not accepted_only)]

    def frame(self, name: str) -> SessionFrame:
        for f in self.frames:
            if f.name == name:
                return f
        raise CalibrationError(f"session {self.root} has no frame {name!r}; pick one of its frames")

    def set_excluded(self, name: str, excluded: bool) -> SessionFrame:
        """Leave a frame out of build and validation (or take it back), and save the session."""
        f = self.frame(name)
        f.excluded = bool(excluded)
        atomic_write_json(self.root / SESSION_FILE, self.to_json())
        return f

    def load_images(self, frames: list[SessionFrame]) -> list[np.ndarray]:
        """Read frames back, refusing any whose bytes changed since capture."""
        out = []
        for f in frames:
            rel = Path(str(f.file))
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise CalibrationError(
                    f"session {self.root} names frame file {f.file!r} outside its folder; capture again"
                )
            path = self.root / rel
            if path.is_symlink():
                raise CalibrationError(f"frame {path} of session {self.root} is a symbolic link; capture again")
            if not path.is_file():
                raise CalibrationError(f"frame {path} of session {self.root} is missing; capture again")
            if sha256_file(path) != f.sha256:
                raise CalibrationError(f"frame {path} changed since capture (checksum mismatch); capture again")
            try:
                out.append(load_image(path))
            except ImageError as e:
                raise CalibrationError(f"unreadable frame {path}: {e}") from e
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "product_id": self.product_id,
            "source": self.source,
            "created": self.created,
            "gates": self.gates,
            "frames": [f.__dict__ for f in self.frames],
        }


def holdout_indices(count: int, fraction: float) -> set[int]:
    """Evenly spread indices of held-out frames (e.g. every 4th for 0.25); deterministic."""
    if not 0 <= fraction < 1:
        raise CalibrationError(f"--holdout must lie in [0, 1), got {fraction}")
    return {i for i in range(count) if int((i + 1) * fraction) > int(i * fraction)}


def capture(
    product_id: str,
    source: str,
    count: int | None,
    out_dir: str | Path,
    *,
    holdout: float = 0.25,
    gates: GateConfig | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_frame: Callable[[CaptureProgress], None] | None = None,
    frames: list[Frame] | None = None,
    **source_options: Any,
) -> Session:
    """Collect ``count`` frames (``None``: all the source has), judge them with the gates and write
    a session folder. ``on_frame`` sees each frame as it arrives with its live gate verdict (capture
    progress); ``frames`` already collected (the station's live view) skip the source."""
    from differad_edge.store import validate_id

    validate_id(product_id, "product id")
    out = Path(out_dir)
    _check_out(out, overwrite)
    kind = describe_source(source) if frames is None else "station"
    if frames is None:
        frames = collect_frames(
            source,
            count,
            progress=progress and on_frame is None,
            on_frame=_live(gates, count, on_frame),
            **source_options,
        )
    report = evaluate_gates([f.image for f in frames], [f.name for f in frames], gates)
    held = holdout_indices(len(frames), holdout)

    iterator: Any = enumerate(zip(frames, report.verdicts, strict=True))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(frames), desc="saving frames", unit="frame")
    session_frames = []
    for i, (frame, verdict) in iterator:
        rel = f"frames/{i:06d}.png"
        save_image(out / rel, frame.image)
        session_frames.append(
            SessionFrame(
                name=frame.name,
                file=rel,
                split="holdout" if i in held else "build",
                sha256=sha256_file(out / rel),
                verdict=verdict.to_json(),
            )
        )
    session = Session(
        root=out,
        product_id=product_id,
        source=f"{kind}:{source}" if kind != "ros" else source,
        frames=session_frames,
        gates={**report.summary(), "config": (gates or GateConfig()).model_dump()},
        created=time.time(),
    )
    atomic_write_json(out / SESSION_FILE, session.to_json())
    return session


def _live(gates: GateConfig | None, total: int | None, on_frame: Callable[[CaptureProgress], None] | None) -> Any:
    """A per-frame callback for ``collect_frames`` that judges each new frame live (``LiveGates``)."""
    if on_frame is None:
        return None
    from .gates import LiveGates, short_reason

    live = LiveGates(gates)
    state = {"n": 0, "accepted": 0, "last": None}

    def callback(frame: Frame) -> None:
        verdict = live.add(frame.name, frame.image)
        state["n"] += 1
        state["accepted"] += verdict.accepted
        if not verdict.accepted:
            state["last"] = f"{short_reason(verdict)} ({frame.name})"
        on_frame(
            CaptureProgress(
                state["n"], total, frame.name, verdict, state["accepted"], state["last"], not verdict.accepted
            )
        )

    return callback


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to write into anything but a new/empty folder, or (with ``--overwrite``) an earlier
    session folder: capture must never mix its frames into, or overwrite, a folder of other files."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise CalibrationError(f"--out {out} exists and is not a folder; choose a new --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / SESSION_FILE).is_file():
        raise CalibrationError(
            f"--out {out} is a folder with other files in it (not a capture session); choose a new or empty --out"
        )
    if not overwrite:
        raise CalibrationError(f"{out} already holds a capture session; choose a new --out or pass --overwrite")


def load_session(root: str | Path) -> Session:
    root = Path(root)
    path = root / SESSION_FILE
    if not path.is_file():
        raise CalibrationError(
            f"{root} is not a capture session (no {SESSION_FILE}); run 'differad-calibrate capture' first"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        frames = [SessionFrame(**f) for f in data["frames"]]
        session = Session(
            root=root,
            product_id=str(data["product_id"]),
            source=str(data.get("source", "")),
            frames=frames,
            gates=dict(data.get("gates", {})),
            created=float(data.get("created", 0.0)),
        )
        if not all(isinstance(getattr(f, k), str) for f in frames for k in ("name", "file", "split", "sha256")):
            raise TypeError("frame name/file/split/sha256 must be strings")
        if not all(isinstance(f.verdict, dict) for f in frames):
            raise TypeError("frame verdicts must be objects")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CalibrationError(f"session file {path} is damaged ({e}); capture again") from e
    except RecursionError as e:
        raise CalibrationError(f"session file {path} is damaged (nested too deeply); capture again") from e
    if data.get("format_version") != FORMAT_VERSION:
        raise CalibrationError(f"session {path} has format {data.get('format_version')!r}, expected {FORMAT_VERSION}")
    return session


def regate(session: Session, config: GateConfig) -> GateReport:
    """Judge a session's frames again (e.g. with thresholds changed after looking at the verdicts)."""
    images = session.load_images(session.frames)
    report = evaluate_gates(images, [f.name for f in session.frames], config)
    for f, v in zip(session.frames, report.verdicts, strict=True):
        f.verdict = v.to_json()
    session.gates = {**report.summary(), "config": config.model_dump()}
    return report
