"""Register a target frame onto its reference, so a golden or language-model engine compares the
same physical points, and boxes found in the reference frame map back to the camera frame.

OpenCV ECC (``findTransformECC``) runs on a small gray pyramid (the warp is estimated where it is
cheap, then refined one level up). ECC's correlation ignores a global gain and offset but not a
lighting gradient, which on a low-contrast texture (a brick wall: ±12 % light across the part is as
strong as the texture) makes ECC diverge or costs a perfectly aligned frame its ``min_score``. So
when ECC fails or scores low it runs again on the *high-passed* levels (the large-scale mean
removed), from the identity and then from the translation a phase correlation of the coarsest level
finds (within a quarter of the image), the best-scoring fit kept; the acceptance score is the better
of the gray and the high-passed correlation. Then ORB features + RANSAC give an initial warp that
ECC refines. Already aligned frames take an identity fast path (no resampling).

The motion model that fits a station is chosen at calibration (``choose_motion``: the simplest
model whose residual is close to the best one's) and stored with the reference, so the inspector
registers live frames with the model the reference was built and validated with. Every alignment
reports its residual misalignment (``Alignment.residual_px``, measured by phase correlation of a
grid of patches) and the region of the reference the frame actually covers (``Alignment.valid``):
an engine must not judge the seam where the warped frame has no pixels.

Warps are kept in the SDK's pixel-*edge* convention (``coords.PixelTransform``, box corners on
pixel edges) and converted to OpenCV's pixel-*center* convention only when calling OpenCV.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

import cv2
import numpy as np

from .coords import PixelTransform
from .errors import BoxError, ConfigError, ImageError
from .images import image_size, to_rgb8


class Motion(StrEnum):
    """ECC motion models, simplest first. Members are ``str``: a plain ``"homography"`` compares,
    hashes and serializes (JSON, manifests) as the member does."""

    TRANSLATION = "translation"
    EUCLIDEAN = "euclidean"
    AFFINE = "affine"
    HOMOGRAPHY = "homography"


#: Every motion model, simplest first: the one list the CLIs, configs and ROS parameters offer.
MOTIONS: tuple[Motion, ...] = tuple(Motion)
#: Key of ``Reference.metadata`` holding the alignment chosen at calibration (``{"motion": ...}``).
ALIGN_KEY = "alignment"
Fill = Literal["reference", "replicate", "black"]
#: How a frame was registered: ``identity`` (already aligned: nothing resampled, ``aligned`` is the
#: frame), ``resize`` (a frame of another size, otherwise in place: resampled by the size mapping
#: alone), ``ecc``, ``features`` (ORB/SIFT + RANSAC start, refined by ECC).
Method = Literal["identity", "resize", "ecc", "features"]


def stored_motion(metadata: Mapping[str, Any]) -> Motion | None:
    """The motion model calibration chose and validated a reference with (``metadata[ALIGN_KEY]``),
    None where none (or an unknown name) is stored: the inspector and validation both let it win."""
    stored = (metadata.get(ALIGN_KEY) or {}).get("motion")
    return Motion(stored) if stored in MOTIONS else None


_CV_MOTION = {
    Motion.TRANSLATION: cv2.MOTION_TRANSLATION,
    Motion.EUCLIDEAN: cv2.MOTION_EUCLIDEAN,
    Motion.AFFINE: cv2.MOTION_AFFINE,
    Motion.HOMOGRAPHY: cv2.MOTION_HOMOGRAPHY,
}


@dataclass(frozen=True)
class AlignConfig:
    """How to register a target onto the reference.

    motion: ECC motion model (``translation`` < ``euclidean`` < ``affine`` < ``homography``); a
        plain string is accepted and turned into its :class:`Motion` here.
        Default ``homography``: a free part under a real lens moves, turns, changes scale by a
        percent and tilts a little; a rigid model leaves about 2 px of residual at the corners.
    size: longest side (px) of the finest pyramid level ECC runs on; full-resolution accuracy is
        about ``full_side / size`` times ECC's sub-pixel accuracy, well under a pixel at 200.
    levels: pyramid levels (each halves ``size``); coarse levels widen the capture range.
    iterations / eps: ECC stopping criteria per level.
    min_score: ECC correlation (0..1) below which the alignment is reported as failed.
    identity_score: correlation at the identity warp above which the frame counts as already
        aligned (fast path: no ECC, no resampling). Set above 1 to disable.
    identity_tolerance_px: an estimated warp moving no corner (nor the centre) farther than this
        (``PixelTransform.max_corner_shift``) is treated as identity.
    features: fallback when ECC fails or scores low (``"orb"``, ``"sift"`` or ``None``).
    fill: what shows where the warped target has no pixels: the reference itself (no false
        differences at the borders), replicated edge pixels, or black.
    robust: refit once without strongly deviating pixels (a large defect otherwise pulls the warp).
    """

    motion: Motion = Motion.HOMOGRAPHY
    size: int = 200
    levels: int = 2
    iterations: int = 30
    eps: float = 1e-4
    min_score: float = 0.8
    identity_score: float = 0.999
    identity_tolerance_px: float = 0.25
    features: Literal["orb", "sift"] | None = "orb"
    fill: Fill = "reference"
    robust: bool = True

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise ConfigError(f"motion={self.motion!r} is not supported; use one of {sorted(m.value for m in Motion)}")
        object.__setattr__(self, "motion", Motion(self.motion))
        if not 16 <= self.size <= 4096:
            raise ConfigError(f"size={self.size} must lie in [16, 4096] px (the finest ECC level's longest side)")
        if not 1 <= self.levels <= 6 or self.size >> (self.levels - 1) < 16:
            raise ConfigError(f"levels={self.levels} must be 1..6 with the coarsest level >= 16 px; lower it")
        if self.iterations < 1 or not 0 < self.eps < 1:
            raise ConfigError(f"iterations={self.iterations} must be >= 1 and eps={self.eps} in (0, 1)")
        if not 0 <= self.min_score <= 1:
            raise ConfigError(f"min_score={self.min_score} must lie in [0, 1]")
        if self.features not in ("orb", "sift", None):
            raise ConfigError(f"features={self.features!r} must be 'orb', 'sift' or None")
        if self.fill not in ("reference", "replicate", "black"):
            raise ConfigError(f"fill={self.fill!r} must be 'reference', 'replicate' or 'black'")
        if self.identity_tolerance_px < 0:
            raise ConfigError(f"identity_tolerance_px={self.identity_tolerance_px} must be >= 0")


@dataclass
class Alignment:
    """Result of registering a target. ``warp`` maps target px -> reference px; ``aligned`` is the
    target resampled into the reference frame (same size as the reference)."""

    warp: PixelTransform
    aligned: np.ndarray
    score: float
    method: Method
    ok: bool
    reason: str | None = None
    #: uint8 HxW in reference pixels, 255 where the warped frame has pixels (None: it covers all)
    valid: np.ndarray | None = field(default=None, repr=False)
    #: median residual misalignment after the warp (px, reference frame; None where not measurable)
    residual_px: float | None = None
    motion: str = ""

    def covered_share(
        self,
        frame_size: tuple[int, int],
        reference_size: tuple[int, int],
        weights: np.ndarray | None = None,
    ) -> float:
        """Share (0..1) of the reference that the frame's pixels land on after the warp: a cropped or
        zoomed frame aligns well on what it shows, but the rest of the part is unseen.

        ``weights`` (any resolution, stretched over the reference) says how much each place matters,
        e.g. the reference's structure inside its care mask, so an uncovered plain background corner
        of a rotated part does not count against the frame; ``None`` weighs the area uniformly.
        """
        corners = self._frame_corners(frame_size)
        if corners is None:  # the warp sends a corner to infinity: nothing sensible is covered
            return 0.0
        rw, rh = reference_size
        if weights is None:
            rect = np.array([[0, 0], [rw, 0], [rw, rh], [0, rh]], np.float32)
            poly = np.asarray(corners, np.float32)
            if cv2.contourArea(poly, oriented=True) < 0:
                poly = poly[::-1].copy()
            area, _ = cv2.intersectConvexConvex(poly, rect)
            return float(max(area, 0.0) / (rw * rh))
        total = float(weights.sum())
        if total <= 0:
            return 1.0
        mh, mw = weights.shape[:2]
        scaled = corners * np.array([mw / rw, mh / rh])
        inside = np.zeros((mh, mw), np.uint8)
        cv2.fillConvexPoly(inside, np.round(scaled * 16).astype(np.int32), 1, cv2.LINE_8, 4)
        return float(weights[inside > 0].sum() / total)

    def resolution(self, frame_size: tuple[int, int]) -> float:
        """The frame's linear resolution relative to the reference's over what it shows (1: pixel for
        pixel; 0.5: half as many pixels per side, each spread over two reference pixels by the warp)."""
        corners = self._frame_corners(frame_size)
        if corners is None:
            return 0.0
        w, h = frame_size
        area = abs(float(cv2.contourArea(np.asarray(corners, np.float32))))
        return math.sqrt(w * h / area) if area > 0 else 0.0

    def _frame_corners(self, frame_size: tuple[int, int]) -> np.ndarray | None:
        """The frame's corners in reference pixels (None where the warp sends one to infinity)."""
        w, h = frame_size
        try:
            return self.warp.apply_points(np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64))
        except BoxError:
            return None

    def to_frame(self, arr: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """A per-pixel map in reference pixels (e.g. an anomaly map) resampled onto the camera frame."""
        m = _edge_to_center(self.warp.matrix).astype(np.float64)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        return cv2.warpPerspective(np.ascontiguousarray(arr), m, frame_size, flags=flags, borderValue=0)

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "motion": str(self.motion),  # the plain name, not the enum member
            "ok": self.ok,
            "score": round(float(self.score), 6),
            "residual_px": None if self.residual_px is None else round(float(self.residual_px), 3),
            "coverage": 1.0 if self.valid is None else round(float(np.count_nonzero(self.valid)) / self.valid.size, 4),
            "reason": self.reason,
            "warp": [[round(float(v), 6) for v in row] for row in self.warp.matrix],
        }


def _edge_to_center(m: np.ndarray) -> np.ndarray:
    """Pixel-edge homography -> the same map in OpenCV's pixel-center coordinates."""
    t, ti = np.eye(3), np.eye(3)
    t[:2, 2], ti[:2, 2] = -0.5, 0.5
    return t @ m @ ti


def _center_to_edge(m: np.ndarray) -> np.ndarray:
    t, ti = np.eye(3), np.eye(3)
    t[:2, 2], ti[:2, 2] = 0.5, -0.5
    return t @ m @ ti


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled so its longest side is ``side`` (never upsampled)."""
    w, h = size
    s = min(1.0, side / max(w, h))
    return max(8, round(w * s)), max(8, round(h * s))


def _level_sizes(size: tuple[int, int], config: AlignConfig) -> list[tuple[int, int]]:
    """Pyramid level sizes, coarsest first."""
    return [_fit(size, config.size >> i) for i in range(config.levels - 1, -1, -1)]


def _highpass(gray: np.ndarray) -> np.ndarray:
    """float32 gray minus its large-scale mean (Gaussian, sigma = longest side / 25): what ECC and the
    alignment score compare, so a lighting gradient across the part reads as no misalignment."""
    g = gray.astype(np.float32)
    return cv2.subtract(g, cv2.GaussianBlur(g, (0, 0), max(g.shape) / 25.0))


class _Levels:
    """A target's gray pyramid and (computed on first use) its high-passed one."""

    def __init__(self, gray: list[np.ndarray]) -> None:
        self.gray = gray
        self._flat: list[np.ndarray] | None = None

    @property
    def flat(self) -> list[np.ndarray]:
        if self._flat is None:
            self._flat = [_highpass(t) for t in self.gray]
        return self._flat


class Aligner:
    """Registration against one fixed reference: its gray pyramid and keypoints are computed once.

    The inspector keeps one per (product, version); ``align()`` is the one-shot convenience.
    """

    def __init__(self, reference: np.ndarray, config: AlignConfig | None = None) -> None:
        self.config = config or AlignConfig()
        self.reference = to_rgb8(reference)
        self.size = image_size(self.reference)
        self._sizes = _level_sizes(self.size, self.config)
        gray = cv2.cvtColor(self.reference, cv2.COLOR_RGB2GRAY)
        self._ref_levels = [cv2.resize(gray, s, interpolation=cv2.INTER_AREA) for s in self._sizes]
        self._ref_hp = [_highpass(r) for r in self._ref_levels]
        self._ref_features: tuple | None = None
        # Scores compare lightly smoothed images: resampling blurs the warped target a little, which
        # would otherwise read as misalignment on fine textures.
        self._ref_score = tuple(cv2.GaussianBlur(r, (0, 0), 1.0) for r in (self._ref_levels[-1], self._ref_hp[-1]))
        self._window = cv2.createHanningWindow(self._sizes[0], cv2.CV_32F)
        # A textureless reference holds no position: every warp fits equally well.
        self._flat = float(self._ref_levels[-1].std()) < 1.0
        self._ref_gray = gray
        self._patches = _residual_patches(gray)

    # -- public -------------------------------------------------------------------------------
    def align(self, target: np.ndarray) -> Alignment:
        """Register ``target`` (uint8 RGB, any size) onto the reference. Never raises for a poor fit."""
        target = to_rgb8(target)
        cfg = self.config
        prior = PixelTransform.resize(image_size(target), self.size)  # target px -> reference px
        gray = cv2.cvtColor(target, cv2.COLOR_RGB2GRAY)
        tgt_levels = [cv2.resize(gray, s, interpolation=cv2.INTER_AREA) for s in self._sizes]

        if self._flat:
            note = "reference has no texture to register against; frame used as is"
            return self._result(target, prior, 1.0, "identity", note)
        identity = self._identity_score(tgt_levels[-1])
        if identity >= cfg.identity_score:
            return self._result(target, prior, identity, "identity", "")

        levels = _Levels(tgt_levels)
        h_ecc, score, why = self._refined(levels, False, np.eye(3))
        if h_ecc is None or score < cfg.min_score:
            # a lighting gradient on a low-contrast texture sends ECC astray or costs it correlation:
            # again on the high-passed levels, from the identity, then from the translation the phase
            # correlation finds (a periodic texture); the best-scoring fit is kept
            for init in (np.eye(3), self._phase_init(levels.flat[0])):
                if init is None:
                    continue
                h_flat, score_flat, why_flat = self._refined(levels, True, init)
                if h_flat is not None and (h_ecc is None or score_flat > score):
                    h_ecc, score, why = h_flat, score_flat, why_flat
                if h_ecc is not None and score >= cfg.min_score:
                    break
        if h_ecc is not None and score >= cfg.min_score:
            return self._result(target, prior.then(PixelTransform(h_ecc)), score, "ecc", "")
        reasons = [why or f"ECC correlation {score:.3f} < min_score {cfg.min_score}"]
        best_score = score

        if cfg.features is not None:
            h_feat, why_feat = self._features(gray)
            if h_feat is None:
                reasons.append(why_feat)
            else:
                h_ref, _, _ = self._ecc(tgt_levels[-1:], h_feat, self._ref_levels[-1:], levels=self._sizes[-1:])
                h_ref = h_feat if h_ref is None else self._robust(tgt_levels[-1], self._ref_levels[-1], h_ref)
                score_ref = self._score(levels, h_ref)
                if score_ref >= cfg.min_score:
                    return self._result(target, prior.then(PixelTransform(h_ref)), score_ref, "features", "")
                reasons.append(f"feature warp correlation {score_ref:.3f} < min_score {cfg.min_score}")

        # A warp that failed its own check is no better than none: keep only the size mapping.
        reason = "alignment failed: " + "; ".join(r for r in reasons if r)
        return self._result(target, prior, best_score, "ecc", reason, ok=False)

    # -- steps --------------------------------------------------------------------------------
    def _identity_score(self, tgt_small: np.ndarray) -> float:
        try:
            return float(cv2.computeECC(self._ref_levels[-1], tgt_small))
        except cv2.error:
            return 0.0

    def _refined(self, levels: _Levels, flat: bool, init: np.ndarray) -> tuple[np.ndarray | None, float, str]:
        """ECC over the gray (or high-passed: ``flat``) pyramid from ``init``, the robust refit, and
        the fit's score."""
        tgt, refs = (levels.flat, self._ref_hp) if flat else (levels.gray, self._ref_levels)
        h, _, why = self._ecc(tgt, init, refs)
        if h is None:
            return None, 0.0, why
        h = self._robust(tgt[-1], refs[-1], h)
        return h, self._score(levels, h), ""

    def _phase_init(self, tgt_coarse: np.ndarray) -> np.ndarray | None:
        """Translation (full-resolution edge px, target -> reference) by phase correlation of the
        coarsest high-passed level; None without a clear peak or beyond a quarter of the image (a
        periodic texture repeats there: no real capture moves that far)."""
        (dx, dy), response = cv2.phaseCorrelate(tgt_coarse, self._ref_hp[0], self._window)
        w, h = self._sizes[0]
        if response < 0.05 or abs(dx) > w / 4 or abs(dy) > h / 4:
            return None
        init = np.eye(3)
        init[:2, 2] = dx * self.size[0] / w, dy * self.size[1] / h
        return init

    def _robust(self, tgt_small: np.ndarray, ref_small: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Refit without the pixels that disagree strongly after the first fit: ECC minimizes squared
        differences, so a large high-contrast defect pulls the warp by a pixel near it (and the
        misregistered edges then read as more defect). Costs one ECC pass, only on such frames."""
        if not self.config.robust:
            return h
        lvl = self._sizes[-1]
        s = PixelTransform.resize(self.size, lvl).matrix
        m = _edge_to_center(s @ h @ np.linalg.inv(s))
        warped = cv2.warpPerspective(tgt_small, m, lvl, flags=cv2.INTER_LINEAR).astype(np.float32)
        valid = cv2.warpPerspective(np.full(tgt_small.shape[:2], 255, np.uint8), m, lvl, flags=cv2.INTER_NEAREST)
        valid = cv2.erode(valid, np.ones((3, 3), np.uint8))
        inside = valid > 0
        if np.count_nonzero(inside) < 64:
            return h
        ref = ref_small.astype(np.float32)
        r, w = ref[inside], warped[inside]
        z = np.abs((warped - w.mean()) / max(float(w.std()), 1e-3) - (ref - r.mean()) / max(float(r.std()), 1e-3))
        zi = z[inside]
        mad = float(_median(np.abs(zi - _median(zi)))) * 1.4826
        outliers = ((z > max(6.0 * mad, 1.0)) & inside).astype(np.uint8)
        # only a defect big enough to bias the fit counts; the frame's outer strip is where frames
        # legitimately differ most (what the part's fixture shows), so it does not trigger a refit
        m_px = max(3, min(lvl) // 25)
        core = outliers[m_px:-m_px, m_px:-m_px]
        if cv2.countNonZero(core) < max(12, 0.001 * core.size):
            return h
        outliers = cv2.dilate(outliers, np.ones((5, 5), np.uint8))
        mask = cv2.bitwise_and(valid, valid, mask=cv2.bitwise_not(outliers * 255))
        if cv2.countNonZero(mask) < 0.5 * np.count_nonzero(inside):
            return h  # most of the frame disagrees: not a local defect, keep the plain fit
        refit, _, _ = self._ecc([tgt_small], h, [ref_small], levels=[lvl], template_mask=mask, iterations=10)
        return h if refit is None else refit

    def _ecc(
        self,
        tgt_levels: list[np.ndarray],
        init: np.ndarray,
        ref_levels: list[np.ndarray],
        levels: list[tuple[int, int]] | None = None,
        template_mask: np.ndarray | None = None,
        iterations: int | None = None,
    ) -> tuple[np.ndarray | None, float, str]:
        """ECC from coarse to fine (target and reference levels of one kind: gray or high-passed);
        returns the full-resolution (edge convention) warp, target->reference."""
        cfg = self.config
        sizes = levels or self._sizes
        refs = ref_levels[-len(sizes) :]
        motion = _CV_MOTION[cfg.motion]
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iterations or cfg.iterations, cfg.eps)
        h = init  # target -> reference, full-res edge px
        score = 0.0
        last = len(sizes) - 1
        for i, (ref_small, tgt_small, lvl) in enumerate(zip(refs, tgt_levels[-len(sizes) :], sizes, strict=True)):
            s = PixelTransform.resize(self.size, lvl).matrix
            # ECC wants reference(center px) -> target(center px) at this level.
            w = _edge_to_center(s @ np.linalg.inv(h) @ np.linalg.inv(s))
            w = (w / w[2, 2]).astype(np.float32)
            w = w if motion == cv2.MOTION_HOMOGRAPHY else w[:2].copy()
            try:
                if template_mask is None:
                    score, w = cv2.findTransformECC(ref_small, tgt_small, w, motion, criteria, None, 3)
                else:
                    ones = np.full(tgt_small.shape[:2], 255, np.uint8)
                    score, w = cv2.findTransformECCWithMask(
                        ref_small, tgt_small, template_mask, ones, w, motion, criteria, 3
                    )
            except cv2.error as e:
                if i < last:  # fine textures can vanish at a coarse level: go on from the current warp
                    continue
                return None, 0.0, f"ECC did not converge at {lvl[0]}x{lvl[1]} ({_cv_msg(e)})"
            w3 = np.vstack([w, [0, 0, 1]]) if w.shape == (2, 3) else w.astype(np.float64)
            try:
                h = np.linalg.inv(s) @ np.linalg.inv(_center_to_edge(w3.astype(np.float64))) @ s
            except np.linalg.LinAlgError:
                return None, 0.0, "ECC produced a singular warp"
        if not np.all(np.isfinite(h)):
            return None, 0.0, "ECC produced a non-finite warp"
        return h / h[2, 2], float(max(0.0, min(1.0, score))), ""

    def _score(self, levels: _Levels, h: np.ndarray) -> float:
        """ECC correlation of the target's finest level warped by ``h`` against the reference's: of the
        gray levels, or of the high-passed ones where that is higher (a lighting gradient costs those
        nothing; the gray ones weigh less a frame edge showing something other than the part, e.g.
        the fixture, which stands out once the part's large-scale shading is removed)."""
        lvl = self._sizes[-1]
        s = PixelTransform.resize(self.size, lvl).matrix
        m = _edge_to_center(s @ h @ np.linalg.inv(s))
        valid = cv2.warpPerspective(np.full(lvl[::-1], 255, np.uint8), m, lvl, flags=cv2.INTER_NEAREST)
        valid = cv2.erode(valid, np.ones((3, 3), np.uint8))  # blurred borders mix in outside pixels
        best = 0.0
        for kind, ref in zip(("gray", "flat"), self._ref_score, strict=True):
            tgt = levels.gray[-1] if kind == "gray" else levels.flat[-1]
            warped = cv2.GaussianBlur(cv2.warpPerspective(tgt, m, lvl, flags=cv2.INTER_LINEAR), (0, 0), 1.0)
            try:
                best = max(best, float(cv2.computeECC(ref, warped, valid)))
            except cv2.error:
                continue
            if best >= self.config.min_score:
                break
        return min(1.0, max(0.0, best))

    def _detector(self) -> cv2.Feature2D:
        return (
            cv2.ORB_create(nfeatures=2000, fastThreshold=5)
            if self.config.features == "orb"
            else cv2.SIFT_create(nfeatures=2000, contrastThreshold=0.01)
        )

    def _features(self, tgt_gray: np.ndarray) -> tuple[np.ndarray | None, str]:
        """Keypoints + RANSAC at twice the finest ECC level (keypoints need detail); a warp to start
        ECC from when ECC alone fails."""
        det = self._detector()
        fsize = _fit(self.size, 2 * self.config.size)
        if self._ref_features is None:
            ref_gray = cv2.cvtColor(self.reference, cv2.COLOR_RGB2GRAY)
            self._ref_features = det.detectAndCompute(cv2.resize(ref_gray, fsize, interpolation=cv2.INTER_AREA), None)
        kr, dr = self._ref_features
        tgt_small = cv2.resize(tgt_gray, fsize, interpolation=cv2.INTER_AREA)
        kt, dt = det.detectAndCompute(tgt_small, None)
        if dr is None or dt is None or len(kr) < 8 or len(kt) < 8:
            return None, "too few keypoints for the feature fallback"
        norm = cv2.NORM_HAMMING if dt.dtype == np.uint8 else cv2.NORM_L2
        pairs = cv2.BFMatcher(norm).knnMatch(dt, dr, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
        if len(good) < 8:
            return None, f"only {len(good)} distinctive feature matches (need 8)"
        src = np.array([kt[m.queryIdx].pt for m in good], np.float32)
        dst = np.array([kr[m.trainIdx].pt for m in good], np.float32)
        if self.config.motion == Motion.HOMOGRAPHY:
            m, inl = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
        elif self.config.motion == Motion.AFFINE:
            m, inl = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
        else:
            m, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
        n_in = int(inl.sum()) if inl is not None else 0
        if m is None or n_in < 8:
            return None, f"RANSAC found {n_in} inliers among {len(good)} matches (need 8)"
        m3 = np.vstack([m, [0, 0, 1]]) if m.shape == (2, 3) else m
        s = PixelTransform.resize(self.size, fsize).matrix
        h = np.linalg.inv(s) @ _center_to_edge(m3.astype(np.float64)) @ s
        return h / h[2, 2], ""

    def _result(
        self,
        target: np.ndarray,
        warp: PixelTransform,
        score: float,
        method: Method,
        reason: str,
        ok: bool = True,
    ) -> Alignment:
        """Resample the target into the reference frame (skipped when nothing moves)."""
        m = warp.matrix
        tsize = image_size(target)
        motion = self.config.motion
        if tsize == self.size and warp.max_corner_shift(self.size) <= self.config.identity_tolerance_px:
            residual = self.residual(target) if ok and not self._flat else None
            return Alignment(
                PixelTransform.identity(),
                target,
                score,
                "identity" if ok else method,
                ok,
                reason or None,
                None,
                residual,
                motion,
            )
        # OpenCV maps destination (reference) pixels back to the source (target): pass the inverse.
        inv = _edge_to_center(np.linalg.inv(m))
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        fill = self.config.fill
        # Warped as RGBA: OpenCV's vectorized bilinear resampling covers 1 and 4 channels, not 3; the
        # same pixels at about half the cost of a 3-channel warp, the conversions included.
        src = cv2.cvtColor(target, cv2.COLOR_RGB2RGBA)
        if fill == "reference":
            out = cv2.cvtColor(self.reference, cv2.COLOR_RGB2RGBA)
            border = cv2.BORDER_TRANSPARENT
        else:
            out = None
            border = cv2.BORDER_REPLICATE if fill == "replicate" else cv2.BORDER_CONSTANT
        if self.config.motion == Motion.HOMOGRAPHY or not np.allclose(m[2], [0, 0, 1]):
            out = cv2.warpPerspective(src, inv, self.size, dst=out, flags=flags, borderMode=border)
        else:
            out = cv2.warpAffine(src, inv[:2], self.size, dst=out, flags=flags, borderMode=border)
        aligned = cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)
        valid = coverage(m, tsize, self.size)
        residual = self.residual(aligned, valid) if ok and not self._flat else None
        if method == "identity":  # a frame of another size, otherwise in place: resampled by the size alone
            method = "resize"
        return Alignment(warp, aligned, score, method, ok, reason or None, valid, residual, motion)

    def residual(self, aligned: np.ndarray, valid: np.ndarray | None = None) -> float | None:
        """Median misalignment (px) left between an aligned frame and the reference: sub-pixel phase
        correlation of a 3x3 grid of textured patches (photometric changes do not move the peak)."""
        shifts = []
        for x, y, p, window in self._patches:
            if valid is not None and not (
                valid[y, x] and valid[y + p - 1, x + p - 1] and valid[y, x + p - 1] and valid[y + p - 1, x]
            ):
                continue
            tile = aligned[y : y + p, x : x + p]
            tile = cv2.cvtColor(tile, cv2.COLOR_RGB2GRAY) if tile.ndim == 3 else tile
            (dx, dy), response = cv2.phaseCorrelate(
                self._ref_gray[y : y + p, x : x + p].astype(np.float32), tile.astype(np.float32), window
            )
            if response > 0.05 and abs(dx) < p / 4 and abs(dy) < p / 4:
                shifts.append(float(np.hypot(dx, dy)))
        return float(np.median(shifts)) if shifts else None


def _median(a: np.ndarray) -> np.floating:
    """``np.median`` of a 1-D array, the same value at a tenth of its overhead (one partition)."""
    k = a.size // 2
    if a.size % 2:
        return np.partition(a, k)[k]
    p = np.partition(a, (k - 1, k))
    return (p[k - 1] + p[k]) / a.dtype.type(2)


def _residual_patches(gray: np.ndarray, grid: int = 3) -> list[tuple[int, int, int, np.ndarray]]:
    """Textured square patches (x, y, side, Hann window) on a grid inside the reference, for ``residual``."""
    h, w = gray.shape
    p = int(min(64, max(16, min(h, w) // 5)))
    p -= p % 2
    if min(h, w) < 2 * p:
        return []
    window = cv2.createHanningWindow((p, p), cv2.CV_32F)
    out = []
    for fy in np.linspace(0.2, 0.8, grid):
        for fx in np.linspace(0.2, 0.8, grid):
            x, y = int(fx * w - p / 2), int(fy * h - p / 2)
            x, y = min(max(0, x), w - p), min(max(0, y), h - p)
            if float(gray[y : y + p, x : x + p].std()) >= 3.0:
                out.append((x, y, p, window))
    return out


def coverage(
    warp: np.ndarray, target_size: tuple[int, int], size: tuple[int, int], inset: float = 1.5
) -> np.ndarray | None:
    """uint8 mask (reference pixels) of where a target warped by ``warp`` (target -> reference, edge px)
    has pixels, inset by ``inset`` px (interpolation mixes in the fill there); None when it covers all."""
    tw, th = target_size
    w, h = size
    corners = np.array([[inset, inset, 1], [tw - inset, inset, 1], [tw - inset, th - inset, 1], [inset, th - inset, 1]])
    p = corners @ np.asarray(warp, np.float64).T
    if np.any(p[:, 2] <= 1e-9):
        return np.zeros((h, w), np.uint8)
    poly = p[:, :2] / p[:, 2:3] - 0.5  # edge -> center px
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    inside = [
        cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0
        for x, y in ((0, 0), (w - 1, 0), (w - 1, h - 1), (0, h - 1))
    ]
    if all(inside):
        return None
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.round(poly * 16).astype(np.int32), 255, cv2.LINE_8, 4)
    return mask


def choose_motion(
    reference: np.ndarray,
    frames: Sequence[np.ndarray],
    config: AlignConfig | None = None,
    candidates: Sequence[Motion] = (Motion.EUCLIDEAN, Motion.AFFINE, Motion.HOMOGRAPHY),
    tolerance_px: float = 0.05,
) -> tuple[Motion, dict[str, float | None]]:
    """The motion model for a station, chosen on good frames by residual: the simplest candidate whose
    median residual is within ``tolerance_px`` (or 25 %) of the best one's and that registers every
    frame the best one registers. Returns it and each candidate's median residual (px)."""
    base = config or AlignConfig()
    residuals: dict[str, float | None] = {}
    failures: dict[str, int] = {}
    for motion in candidates:
        aligner = Aligner(reference, replace(base, motion=motion))
        values, failed = [], 0
        for f in frames:
            a = aligner.align(f)
            if not a.ok:
                failed += 1
            elif a.residual_px is not None:
                values.append(a.residual_px)
        residuals[str(motion)] = float(np.median(values)) if values else None  # plain names: persisted
        failures[motion] = failed
    scored = {m: r for m, r in residuals.items() if r is not None}
    if not scored:
        return Motion(candidates[-1]), residuals
    fewest = min(failures[m] for m in scored)
    best = min(r for m, r in scored.items() if failures[m] == fewest)
    for motion in candidates:
        r = residuals.get(motion)
        if r is not None and failures[motion] == fewest and r <= max(best + tolerance_px, best * 1.25):
            return Motion(motion), residuals
    return Motion(candidates[-1]), residuals


def _cv_msg(e: cv2.error) -> str:
    text = str(e)
    if "converge" in text:
        return "iterations did not converge: images uncorrelated or not overlapping"
    return text.strip().splitlines()[-1][:160] if text.strip() else "OpenCV error"


def align(reference: np.ndarray, target: np.ndarray, config: AlignConfig | None = None) -> Alignment:
    """Register ``target`` onto ``reference`` (uint8 RGB). Raises ``ImageError`` on bad input only.

    >>> import numpy as np
    >>> img = (np.indices((64, 64)).sum(0) % 7 * 30).astype(np.uint8)
    >>> align(img, img).method
    'identity'
    """
    if not isinstance(reference, np.ndarray) or not isinstance(target, np.ndarray):
        raise ImageError("align() needs two numpy images (uint8 RGB); load files with images.load_image first")
    return Aligner(reference, config).align(target)


__all__ = [
    "ALIGN_KEY",
    "MOTIONS",
    "AlignConfig",
    "Aligner",
    "Alignment",
    "Motion",
    "align",
    "choose_motion",
    "coverage",
    "stored_motion",
]
