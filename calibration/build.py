"""Build a reference from accepted frames: align to the anchor, combine, mask, store as a candidate.

The motion model is chosen here (``motion="auto"``: the simplest model whose residual on these
frames is close to the best one's) and stored with the reference (``metadata["alignment"]``), so
validation and the live inspector register frames exactly as the reference was built. Every aligned
frame is brought to the anchor's lighting (gain, offset, gradient) before the variation model, so
the spread measures the part and not the lamp.

The result never goes live by itself: ``store.add_version`` writes a *candidate* that must pass
``validate`` (or be force-promoted with a logged reason) before the node uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from differad_edge.errors import CalibrationError

from .config import BuildConfig, GateConfig, make_config
from .masks import load_care_mask, unstable_mask
from .session import Session, regate


@dataclass
class BuiltReference:
    """What ``build_reference`` made, before it is stored."""

    image: np.ndarray
    center: np.ndarray
    spread: np.ndarray
    care_mask: np.ndarray
    metrics: dict[str, Any] = field(default_factory=dict)


def _valid_region(warp: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Reference pixels the warped target actually covers (its borders carry no information)."""
    w, h = size
    ones = np.full((h, w), 255, np.uint8)
    valid = cv2.warpPerspective(ones, warp, (w, h), flags=cv2.INTER_NEAREST)
    return cv2.erode(valid, np.ones((3, 3), np.uint8)) > 0


def build_reference(
    images: list[np.ndarray],
    anchor: int,
    config: BuildConfig | None = None,
    care_mask: np.ndarray | None = None,
    names: list[str] | None = None,
    progress: bool = False,
) -> BuiltReference:
    """Align ``images`` to ``images[anchor]`` and build center, spread and care mask."""
    from differad_edge.alignment import AlignConfig, Aligner, Motion, choose_motion
    from differad_edge.variation import Photometric, build_variation_model

    config = config or BuildConfig()
    if not images:
        raise CalibrationError("no accepted frames to build a reference from; capture more good frames")
    names = names or [f"frame_{i}" for i in range(len(images))]
    ref = images[anchor]
    h, w = ref.shape[:2]
    order = [anchor] + [i for i in range(len(images)) if i != anchor]
    motion, residuals = config.motion, {}
    if motion == "auto":
        motion, residuals = choose_motion(ref, [images[i] for i in order[1:6]])
    aligner = Aligner(ref, AlignConfig(motion=Motion(motion)))
    photo = Photometric(cv2.GaussianBlur(cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY), (0, 0), 1.0), mode=config.brightness)
    aligned, valid, used, dropped, frame_residuals = [], np.ones((h, w), bool), [], {}, []
    iterator: Any = order[: config.max_frames]
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="aligning frames", unit="frame")
    for i in iterator:
        result = aligner.align(images[i])
        if not result.ok:
            dropped[names[i]] = result.reason or "alignment failed"
            continue
        aligned.append(result.aligned if i == anchor else photo.normalize(result.aligned, result.valid))
        valid &= _valid_region(result.warp.matrix, (w, h))
        used.append(names[i])
        if i != anchor and result.residual_px is not None:
            frame_residuals.append(result.residual_px)
    center, spread = build_variation_model(aligned, method=config.method)
    image = np.clip(np.round(center), 0, 255).astype(np.uint8)

    mask = np.full((h, w), 255, np.uint8) if care_mask is None else care_mask.copy()
    mask[~valid] = 0
    unstable_fraction = 0.0
    if config.auto_mask.enabled:
        unstable = unstable_mask(spread, config.auto_mask.max_spread, config.auto_mask.dilate_px)
        unstable_fraction = float(np.count_nonzero(unstable)) / unstable.size
        mask[unstable > 0] = 0
    if not mask.any():
        raise CalibrationError("the care mask is empty after removing unstable and uncovered pixels; relax auto-mask")
    s = spread.max(axis=2) if spread.ndim == 3 else spread
    metrics = {
        "frames_used": used,
        "frames_dropped": dropped,
        "anchor": names[anchor],
        "method": str(config.method),  # persisted: the plain names
        "motion": str(motion),
        "motion_residuals_px": {k: (None if v is None else round(v, 4)) for k, v in residuals.items()},
        "residual_px_median": round(float(np.median(frame_residuals)), 4) if frame_residuals else None,
        "brightness": config.brightness,
        "spread_median": round(float(np.median(s)), 4),
        "spread_p99": round(float(np.percentile(s, 99)), 4),
        "care_fraction": round(float(np.count_nonzero(mask)) / mask.size, 6),
        "unstable_fraction": round(unstable_fraction, 6),
    }
    return BuiltReference(image=image, center=center, spread=spread, care_mask=mask, metrics=metrics)


def build_candidate(
    store: Any,
    session: Session,
    *,
    config: BuildConfig | None = None,
    gates: GateConfig | None = None,
    care_mask: str | Path | None = None,
    progress: bool = False,
    operator: str | None = None,
) -> str:
    """Build from a session's accepted *build* frames and add the result as a candidate version."""
    config = config or BuildConfig()
    if gates is not None:
        regate(session, gates)
    min_accepted = (
        gates or make_config(GateConfig, session.gates.get("config", {}), "session gate config")
    ).min_accepted
    frames = session.select("build")
    if len(frames) < min_accepted:
        rejected = {f.name: "; ".join(f.verdict.get("reasons", {}).values()) for f in session.select("build", False)}
        rejected = {k: v for k, v in rejected.items() if v}
        detail = "; ".join(f"{k}: {v}" for k, v in list(rejected.items())[:5])
        raise CalibrationError(
            f"only {len(frames)} frames of session {session.root} passed the quality gates (need {min_accepted}); "
            f"fix the station and capture again{f' ({detail})' if detail else ''}"
        )
    images = session.load_images(frames)
    scores = [float(f.verdict.get("station_corr", 0.0)) for f in frames]
    anchor = int(np.argmax(scores))
    size = (images[0].shape[1], images[0].shape[0])
    mask = load_care_mask(care_mask, size) if care_mask is not None else None
    built = build_reference(images, anchor, config, mask, [f.name for f in frames], progress=progress)
    used = built.metrics["frames_used"]
    if len(used) < min_accepted:  # a reference from one or two frames has no real variation model
        dropped = "; ".join(f"{k}: {v}" for k, v in list(built.metrics["frames_dropped"].items())[:5])
        raise CalibrationError(
            f"only {len(used)} of {len(frames)} accepted frames aligned to the anchor (need {min_accepted}); "
            f"nothing was stored - check the station's stability and capture again ({dropped})"
        )
    from differad_edge.alignment import ALIGN_KEY

    metadata = {
        # what the inspector registers live frames with (the model this reference was built with)
        ALIGN_KEY: {
            "motion": built.metrics["motion"],
            "residual_px": built.metrics["residual_px_median"],
            "candidates_px": built.metrics["motion_residuals_px"],
        },
        "calibration": {
            "session": str(session.root),
            "source": session.source,
            "gates": {k: v for k, v in session.gates.items() if k != "config"},
            "gate_config": session.gates.get("config", {}),
            "build": built.metrics,
            "build_config": config.model_dump(mode="json"),
            "care_mask_source": str(care_mask) if care_mask is not None else None,
        },
    }
    return store.add_version(
        session.product_id,
        built.image,
        care_mask=built.care_mask,
        mean=built.center,
        spread=built.spread,
        metadata=metadata,
        operator=operator,
    )
