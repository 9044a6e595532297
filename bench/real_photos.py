"""Benchmark: the embedded golden engine on real photographs, tried the way a field engineer would.

Stations are photographs that install offline with scikit-image (``skimage.data``). A deterministic
camera model (by seed) takes every frame of a *free* part: pose within ±4 px, ±3°, ±1 % scale and a
mild perspective; illumination gain, offset and a linear gradient; blur; sensor noise; JPEG. Defects
are painted on the part before the camera sees it (so they move with it), with their masks:
thin scratches, stains, missing material, foreign objects and low-contrast blemishes.

Per station and seed the bench writes the dataset (``pairs.jsonl`` / ``calibration.jsonl`` in the
format of ``differad_edge.dataset``, masks included) and runs:

- the **field path**: ``capture`` (folder of 16 captured good frames) -> ``build`` -> ``validate``
  (the session's held-out frames plus the calibration split's good and known-defect frames) ->
  ``promote`` without ``--force``; every setting at its documented default; then the promoted
  version inspects the evaluation pairs through the ``Inspector``;
- the **single-reference path**: ``Inspector.inspect_pair`` against the pair's reference image
  (one captured good frame), engine defaults;
- two classical baselines on the same aligned pairs: absdiff + Otsu and an SSIM difference map,
  their thresholds (floor and minimum area) calibrated on the 30 % calibration split (the paper's
  protocol for non-LLM baselines) to the best F1@0.3.

Everything is scored on the 70 % evaluation split by ``differad_edge.metrics`` (F1@0.3, false
alarms of good parts, per station and per defect type, image AUROC / F1-max).

    .venv/bin/python bench/real_photos.py                      # 8 stations x seeds 0 1 2
    .venv/bin/python bench/real_photos.py --seeds 0 --stations camera coins
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))  # calibration/ of this checkout

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from differad_edge.alignment import AlignConfig, Aligner  # noqa: E402
from differad_edge.boxes import Box  # noqa: E402
from differad_edge.dataset import Pair, read_pairs, write_pairs  # noqa: E402
from differad_edge.engines import Reference  # noqa: E402
from differad_edge.engines.golden import GoldenEngine  # noqa: E402
from differad_edge.errors import DifferadError  # noqa: E402
from differad_edge.images import load_image, save_image  # noqa: E402
from differad_edge.inspector import Inspector  # noqa: E402
from differad_edge.metrics import Record, evaluate  # noqa: E402

#: Stations: photograph name in ``skimage.data`` (textures, objects, print).
STATIONS = ("camera", "astronaut", "coffee", "chelsea", "coins", "page", "brick", "gravel")
DEFECTS = ("scratch", "stain", "missing", "foreign", "low_contrast")
SCENE = 400  # side of the part (photograph) in pixels
VIEW = 352  # side of the camera frame
N_CAPTURE = 16  # frames captured for calibration (the field session)
N_GOOD = 30  # good test parts per station
N_PER_DEFECT = 10  # test parts per defect kind per station
CALIBRATION_SHARE = 0.3


# -- the camera ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Camera:
    """Nuisances of a real capture of a free part; every frame draws its own from the rng."""

    shift_px: float = 4.0
    rotation_deg: float = 3.0
    scale: float = 0.01
    perspective: float = 3e-5  # projective terms (corner moves about 1 px)
    gain: float = 0.12  # gain in 1 ± gain
    offset: float = 12.0  # gray levels
    gradient: float = 0.12  # multiplicative ramp amplitude from the center to the edge
    blur: tuple[float, float] = (0.4, 1.0)  # Gaussian sigma
    noise: tuple[float, float] = (1.5, 3.0)  # Gaussian sigma, gray levels
    jpeg: tuple[int, int] = (85, 95)

    def pose(self, rng: np.random.Generator) -> np.ndarray:
        """3x3 scene -> frame homography (OpenCV pixel centers)."""
        a = np.deg2rad(rng.uniform(-self.rotation_deg, self.rotation_deg))
        s = 1.0 + rng.uniform(-self.scale, self.scale)
        t = rng.uniform(-self.shift_px, self.shift_px, 2)
        cs, cv = (SCENE - 1) / 2.0, (VIEW - 1) / 2.0
        to_c = np.array([[1, 0, -cs], [0, 1, -cs], [0, 0, 1]], float)
        rs = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [0, 0, 1]], float)
        p = np.eye(3)
        p[2, :2] = rng.uniform(-self.perspective, self.perspective, 2)
        back = np.array([[1, 0, cv + t[0]], [0, 1, cv + t[1]], [0, 0, 1]], float)
        return back @ p @ rs @ to_c

    def shoot(
        self, scene: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Frame (uint8 RGB, JPEG round trip) of ``scene`` (float32 RGB) and the defect mask in frame px."""
        h = self.pose(rng)
        img = cv2.warpPerspective(scene, h, (VIEW, VIEW), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        out_mask = None
        if mask is not None:
            out_mask = cv2.warpPerspective(mask, h, (VIEW, VIEW), flags=cv2.INTER_LINEAR) > 127
        gain = 1.0 + rng.uniform(-self.gain, self.gain)
        offset = rng.uniform(-self.offset, self.offset)
        phi = rng.uniform(0, 2 * np.pi)
        g = rng.uniform(0, self.gradient)
        yy, xx = np.mgrid[0:VIEW, 0:VIEW].astype(np.float32)
        c = (VIEW - 1) / 2.0
        ramp = 1.0 + g * ((xx - c) * np.cos(phi) + (yy - c) * np.sin(phi)) / c
        img = img * (gain * ramp)[:, :, None] + offset
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*self.blur))
        img = img + rng.normal(0, rng.uniform(*self.noise), img.shape).astype(np.float32)
        img8 = np.clip(np.round(img), 0, 255).astype(np.uint8)
        q = int(rng.integers(self.jpeg[0], self.jpeg[1] + 1))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
        assert ok
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), out_mask


def photograph(name: str) -> np.ndarray:
    """The station's part: the photograph scaled so its short side is SCENE px, center crop, RGB float32."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.dstack([img] * 3)
    img = img[:, :, :3]
    h, w = img.shape[:2]
    s = SCENE / min(h, w)
    img = cv2.resize(
        img,
        (max(SCENE, round(w * s)), max(SCENE, round(h * s))),
        interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC,
    )
    h, w = img.shape[:2]
    y, x = (h - SCENE) // 2, (w - SCENE) // 2
    return img[y : y + SCENE, x : x + SCENE].astype(np.float32)


# -- defects ---------------------------------------------------------------------------------
def _blend(scene: np.ndarray, alpha: np.ndarray, value: np.ndarray) -> np.ndarray:
    a = alpha[:, :, None]
    return scene * (1 - a) + value * a


def _polygon(rng: np.random.Generator, c: tuple[float, float], r: float, n: int = 9) -> np.ndarray:
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.6, 1.0, n)
    return np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], 1).astype(np.int32)


def paint_defect(scene: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(scene with the defect, uint8 mask 0/255 in scene px). Placed where every pose keeps it in view."""
    margin = (SCENE - VIEW) // 2 + 40
    c = (float(rng.uniform(margin, SCENE - margin)), float(rng.uniform(margin, SCENE - margin)))
    out = scene.copy()
    alpha = np.zeros((SCENE, SCENE), np.float32)
    local = cv2.GaussianBlur(scene, (0, 0), 4.0)
    if kind == "scratch":  # thin: 1-2 px wide, slightly bent, darker or brighter
        length, ang = rng.uniform(50, 130), rng.uniform(0, np.pi)
        bend = rng.uniform(-0.25, 0.25)
        pts = []
        for t in np.linspace(-0.5, 0.5, 5):
            a = ang + bend * t
            pts.append((c[0] + t * length * np.cos(a), c[1] + t * length * np.sin(a)))
        cv2.polylines(alpha, [np.array(pts, np.int32)], False, 1.0, int(rng.integers(1, 3)), cv2.LINE_AA)
        value = local * 0.3 if rng.random() < 0.5 else np.minimum(local + 100.0, 255.0)
        out = _blend(scene, alpha, value)
        mask = alpha > 0.3
    elif kind == "stain":  # soft tinted blob, 25-50 % darker
        ax = (rng.uniform(8, 20), rng.uniform(8, 20))
        cv2.ellipse(alpha, (int(c[0]), int(c[1])), (int(ax[0]), int(ax[1])), rng.uniform(0, 180), 0, 360, 1.0, -1)
        alpha = cv2.GaussianBlur(alpha, (0, 0), 3.0)
        tint = np.array([0.75, 0.62, 0.45], np.float32) * rng.uniform(0.7, 1.0)
        out = _blend(scene, alpha, scene * tint)
        mask = alpha > 0.4
    elif kind == "missing":  # a piece gone: flat fixture colour shows through
        poly = _polygon(rng, c, rng.uniform(8, 18))
        cv2.fillPoly(alpha, [poly], 1.0, cv2.LINE_AA)
        value = np.full(3, 25.0 if local[int(c[1]), int(c[0])].mean() > 110 else 225.0, np.float32)
        out = _blend(scene, alpha, value)
        mask = alpha > 0.5
    elif kind == "foreign":  # a chip of something else: colour unlike the part, with its own texture
        poly = _polygon(rng, c, rng.uniform(6, 14))
        cv2.fillPoly(alpha, [poly], 1.0, cv2.LINE_AA)
        base = np.array(rng.uniform(0, 255, 3), np.float32)
        if np.abs(base - local[int(c[1]), int(c[0])]).max() < 80:
            base = 255.0 - local[int(c[1]), int(c[0])]
        tex = base + rng.normal(0, 12, (SCENE, SCENE, 1)).astype(np.float32)
        out = _blend(scene, alpha, np.clip(tex, 0, 255))
        mask = alpha > 0.5
    elif kind == "low_contrast":  # faint smooth blemish, 15-25 gray levels
        ax = (rng.uniform(12, 25), rng.uniform(12, 25))
        cv2.ellipse(alpha, (int(c[0]), int(c[1])), (int(ax[0]), int(ax[1])), rng.uniform(0, 180), 0, 360, 1.0, -1)
        alpha = cv2.GaussianBlur(alpha, (0, 0), 2.0)
        delta = rng.uniform(15, 25) * (1 if rng.random() < 0.5 else -1)
        out = scene + (alpha * delta)[:, :, None]
        mask = alpha > 0.5
    else:
        raise ValueError(kind)
    return np.clip(out, 0, 255), (mask * 255).astype(np.uint8)


# -- dataset ---------------------------------------------------------------------------------
@dataclass
class StationData:
    station: str
    seed: int
    root: Path
    capture_dir: Path
    reference: Path  # single reference: the first captured frame
    calibration: list[Pair]
    evaluation: list[Pair]


def make_station(station: str, seed: int, root: Path, camera: Camera) -> StationData:
    """Render one station's capture session and test pairs (deterministic by station and seed)."""
    rng = np.random.default_rng([seed, STATIONS.index(station) if station in STATIONS else 99])
    scene = photograph(station)
    if root.exists():
        shutil.rmtree(root)
    cap = root / "capture"
    cap.mkdir(parents=True)
    for i in range(N_CAPTURE):
        save_image(cap / f"{i:03d}.png", camera.shoot(scene, rng)[0])
    ref_path = cap / "000.png"
    (root / "images").mkdir()
    (root / "masks").mkdir()
    cal: list[Pair] = []
    ev: list[Pair] = []
    jobs = [("good", i) for i in range(N_GOOD)] + [(k, i) for k in DEFECTS for i in range(N_PER_DEFECT)]
    n_cal = {"good": round(N_GOOD * CALIBRATION_SHARE), **{k: round(N_PER_DEFECT * CALIBRATION_SHARE) for k in DEFECTS}}
    for kind, i in jobs:
        pid = f"{station}-s{seed}-{kind}-{i:02d}"
        if kind == "good":
            frame, mask = camera.shoot(scene, rng)[0], None
            box = Box(0, 0, 0, 0)
        else:
            while True:
                painted, m = paint_defect(scene, kind, rng)
                frame, mask = camera.shoot(painted, rng, m)
                if mask is not None and mask.sum() >= 8:
                    break
            ys, xs = np.nonzero(mask)
            box = Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        tgt = root / "images" / f"{pid}.png"
        save_image(tgt, frame)
        mpath = None
        if mask is not None:
            mpath = root / "masks" / f"{pid}.png"
            save_image(mpath, np.dstack([(mask * 255).astype(np.uint8)] * 3))
        pair = Pair(pid, ref_path, tgt, box, category=station, subset=kind, mask=mpath)
        (cal if i < n_cal[kind] else ev).append(pair)
    write_pairs(root / "calibration.jsonl", cal)
    write_pairs(root / "pairs.jsonl", ev)
    # read back through the dataset module: what is scored is what the format holds
    cal = read_pairs(root / "calibration.jsonl").pairs
    ev = read_pairs(root / "pairs.jsonl").pairs
    return StationData(station, seed, root, cap, ref_path, cal, ev)


# -- methods ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    box: Box | None
    score: float
    verdict: str  # OK / NG / NOT_INSPECTED
    residual_px: float | None = None


def inspection_outcome(res: Any) -> Outcome:
    det = res.detection
    residual = None
    if res.alignment is not None:
        residual = res.alignment.to_json().get("residual_px")
    return Outcome(det.box, float(det.score), det.verdict.value, residual)


@dataclass
class FieldResult:
    registered: bool
    version: str
    notes: list[str] = field(default_factory=list)
    motion: str | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    build_refused: bool = False


def field_path(data: StationData, work: Path) -> tuple[FieldResult, Callable[[np.ndarray], Outcome]]:
    """capture -> build -> validate -> promote (documented defaults, no --force); the live inspector."""
    from calibration import build_candidate, capture, promote, run_validation
    from differad_edge.errors import CalibrationError
    from differad_edge.store import ReferenceStore

    pid = f"{data.station}-s{data.seed}"
    store_root, session_dir = work / "store", work / "session"
    for p in (store_root, session_dir):
        if p.exists():
            shutil.rmtree(p)
    store = ReferenceStore(store_root)
    session = capture(pid, str(data.capture_dir), N_CAPTURE, session_dir)
    notes: list[str] = []
    try:  # documented gate defaults, nothing opened: a refusal leaves the station unregistered
        version = build_candidate(store, session)
    except CalibrationError as e:
        refused = {g: n for g, n in (session.gates.get("rejected_by_gate") or {}).items() if n}
        notes.append(f"default gates refused the build ({e}; frames rejected per gate: {refused})")
        return FieldResult(False, "", notes, build_refused=True), lambda frame: Outcome(None, 0.0, "NOT_INSPECTED")
    cal_dir = work / "calibration"
    if cal_dir.exists():
        shutil.rmtree(cal_dir)
    (cal_dir / "good").mkdir(parents=True)
    (cal_dir / "defects").mkdir(parents=True)
    labels = {}
    for p in data.calibration:
        if p.is_normal:
            shutil.copy(p.target, cal_dir / "good" / p.target.name)
        else:
            shutil.copy(p.target, cal_dir / "defects" / p.target.name)
            labels[p.target.name] = p.box.as_int_list()
    (cal_dir / "defects" / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    result = run_validation(
        store, pid, version, session=session, good_dirs=[cal_dir / "good"], defects_dir=cal_dir / "defects"
    )
    registered = True
    try:
        promote(store, pid, version)
    except DifferadError as e:
        registered = False
        notes.append(f"promote refused: {e}")
    info = store.info(pid, version)
    motion = (info.metadata.get("alignment") or {}).get("motion") or (
        info.metadata.get("calibration", {}).get("build_config", {}) or {}
    ).get("motion")
    inspector = Inspector(GoldenEngine(), store=store, align=AlignConfig())

    def run(frame: np.ndarray) -> Outcome:
        return inspection_outcome(inspector.inspect(frame, pid, None if registered else version))

    res = result.to_json()
    summary = {k: res.get(k) for k in ("passed", "false_alarm_rate", "detection_rate", "golden", "reasons")}
    return FieldResult(registered, version, notes, motion, summary), run


def single_reference(data: StationData) -> Callable[[np.ndarray], Outcome]:
    inspector = Inspector(GoldenEngine(), align=AlignConfig())
    ref = Reference(load_image(data.reference), product_id=data.station, version=f"single-{data.seed}")

    def run(frame: np.ndarray) -> Outcome:
        return inspection_outcome(inspector.inspect_pair(ref, frame))

    return run


class Baseline:
    """A difference map on the aligned pair, binarized, the largest component's box.

    ``absdiff``: |target - reference| after a global mean/std match (a fair baseline under gain
    changes), thresholded at max(Otsu, floor). ``ssim``: 1 - SSIM map (scikit-image), thresholded at
    the floor. The floor and the minimum component area are calibrated on the calibration split.
    """

    def __init__(self, kind: str, reference: np.ndarray) -> None:
        self.kind = kind
        self.ref = reference
        self.ref_gray = cv2.GaussianBlur(cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
        self.aligner = Aligner(reference, AlignConfig(motion="homography", fill="reference"))
        self.floor, self.min_area = 0.0, 1

    def diff_map(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        a = self.aligner.align(frame)
        valid = a.valid if getattr(a, "valid", None) is not None else np.full(self.ref_gray.shape, 255, np.uint8)
        valid = cv2.erode(valid, np.ones((7, 7), np.uint8))
        t = cv2.GaussianBlur(cv2.cvtColor(a.aligned, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
        m = valid > 0
        if self.kind == "absdiff":
            r = self.ref_gray
            t = (t - t[m].mean()) / max(t[m].std(), 1e-3) * r[m].std() + r[m].mean()
            d = np.abs(t - r)
        else:
            from skimage.metrics import structural_similarity

            _, s = structural_similarity(self.ref_gray, t, data_range=255.0, full=True)
            d = (1.0 - s) * 100.0
        d[~m] = 0.0
        return d.astype(np.float32), valid, a.ok

    def decide(self, d: np.ndarray, floor: float, min_area: int) -> Outcome:
        box, area, score = self.largest(d, floor)
        if box is None or area < min_area:
            return Outcome(None, score, "OK")
        return Outcome(box, score, "NG")

    def largest(self, d: np.ndarray, floor: float) -> tuple[Box | None, int, float]:
        """The largest component of the binarized map: (box, area, image score)."""
        thr = floor
        if self.kind == "absdiff":
            d8 = np.clip(d * 2, 0, 255).astype(np.uint8)
            otsu, _ = cv2.threshold(d8, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
            thr = max(floor, otsu / 2.0)
        binary = (d > thr).astype(np.uint8)
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        score = float(d.max())
        if n <= 1:
            return None, 0, score
        i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        x, y, w, h, area = (int(v) for v in stats[i])
        return Box(x, y, x + w, y + h), area, score


def calibrate_baseline(b: Baseline, maps: list[tuple[np.ndarray, Pair]]) -> None:
    """Floor and min-area on the calibration split: the best F1@0.3 (ties: the larger floor)."""
    from differad_edge.metrics import compute_metrics

    top = max(float(np.percentile(d, 99.9)) for d, _ in maps)
    floors = np.linspace(top * 0.05, top, 24)
    best = (-1.0, 0.0, 0.0, 1)
    for floor in floors:
        found = [b.largest(d, float(floor)) for d, _ in maps]
        for min_area in (4, 16, 49, 100):
            recs = [
                Record(box if box is not None and area >= min_area else None, p.box)
                for (box, area, _), (_, p) in zip(found, maps, strict=True)
            ]
            f1 = compute_metrics(recs).f1 or 0.0
            if (f1, floor) > best[:2]:
                best = (f1, float(floor), 0.0, min_area)
    b.floor, b.min_area = best[1], best[3]


# -- scoring ---------------------------------------------------------------------------------
def records(pairs: list[Pair], outcomes: list[Outcome]) -> list[Record]:
    return [
        Record(
            o.box if o.verdict == "NG" else None,
            p.box,
            valid=o.verdict != "NOT_INSPECTED",
            category=p.category,
            subset=p.subset,
            id=p.id,
            score=o.score,
            verdict=o.verdict,
        )
        for p, o in zip(pairs, outcomes, strict=True)
    ]


def summarize(recs: list[Record]) -> dict[str, Any]:
    rep = evaluate(recs)
    goods = [r for r in recs if r.gt.is_zero]
    fa = sum(r.verdict == "NG" for r in goods) / len(goods)
    ni = sum(r.verdict == "NOT_INSPECTED" for r in recs) / len(recs)
    per_defect = {}
    for k in DEFECTS:
        m = rep.per_subset.get(k)
        if m is not None:
            per_defect[k] = m.tp / m.n_ano if m.n_ano else None
    return {
        "f1": 100 * (rep.overall.f1 or 0.0),
        "false_alarms": 100 * fa,
        "not_inspected": 100 * ni,
        "found": per_defect,
        "per_station": {c: 100 * (m.f1 or 0.0) for c, m in rep.per_category.items()},
        "auroc": None if rep.image is None or rep.image.auroc is None else 100 * rep.image.auroc,
        "f1_max": None if rep.image is None or rep.image.f1_max is None else 100 * rep.image.f1_max,
    }


METHODS = ("field", "single", "absdiff_otsu", "ssim")


def run_seed(seed: int, stations: list[str], out: Path, camera: Camera) -> dict[str, Any]:
    recs: dict[str, list[Record]] = {m: [] for m in METHODS}
    fields: dict[str, FieldResult] = {}
    residuals: list[float] = []
    for st in stations:
        t0 = time.perf_counter()
        data = make_station(st, seed, out / f"seed{seed}" / st / "data", camera)
        frames = {p.id: load_image(p.target) for p in data.calibration + data.evaluation}
        fr, field_run = field_path(data, out / f"seed{seed}" / st)
        fields[st] = fr
        outs = [field_run(frames[p.id]) for p in data.evaluation]
        residuals += [o.residual_px for o in outs if o.residual_px is not None]
        recs["field"] += records(data.evaluation, outs)
        single = single_reference(data)
        recs["single"] += records(data.evaluation, [single(frames[p.id]) for p in data.evaluation])
        ref = load_image(data.reference)
        for kind, name in (("absdiff", "absdiff_otsu"), ("ssim", "ssim")):
            b = Baseline(kind, ref)
            cal = [(b.diff_map(frames[p.id])[0], p) for p in data.calibration]
            calibrate_baseline(b, cal)
            outs_b = [b.decide(b.diff_map(frames[p.id])[0], b.floor, b.min_area) for p in data.evaluation]
            recs[name] += records(data.evaluation, outs_b)
        print(
            f"  seed {seed} {st}: registered={fr.registered} motion={fr.motion} "
            f"validation={fr.validation.get('passed')} FA={fr.validation.get('false_alarm_rate')} "
            f"DR={fr.validation.get('detection_rate')} golden={fr.validation.get('golden')} "
            f"({time.perf_counter() - t0:.0f} s){' NOTES: ' + '; '.join(fr.notes) if fr.notes else ''}",
            flush=True,
        )
    out_seed = {m: summarize(r) for m, r in recs.items()}
    out_seed["_registered"] = sum(f.registered for f in fields.values())
    out_seed["_stations"] = len(fields)
    out_seed["_build_refused"] = sum(f.build_refused for f in fields.values())
    out_seed["_residual_px"] = float(np.median(residuals)) if residuals else None
    out_seed["_fields"] = {
        k: {"registered": v.registered, "motion": v.motion, "validation": v.validation, "notes": v.notes}
        for k, v in fields.items()
    }
    return out_seed


def _med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _f(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def render(results: dict[int, dict[str, Any]], stations: list[str]) -> str:
    seeds = sorted(results)
    names = {
        "field": "field path (store, promoted)",
        "single": "single reference",
        "absdiff_otsu": "absdiff + Otsu (cal. 30 %)",
        "ssim": "SSIM map (cal. 30 %)",
    }
    lines = [
        f"seeds {seeds}, stations {', '.join(stations)}; medians over seeds (per-seed values in brackets)",
        "",
        "| method | F1@0.3 | false alarms (good) | not inspected | image AUROC | F1-max | "
        + " | ".join(f"found: {k}" for k in DEFECTS)
        + " |",
        "| --- | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in DEFECTS) + " |",
    ]
    for m in METHODS:
        rows = [results[s][m] for s in seeds]
        cells = [
            f"{_f(_med([r['f1'] for r in rows]))} [{', '.join(_f(r['f1']) for r in rows)}]",
            f"{_f(_med([r['false_alarms'] for r in rows]))} %",
            f"{_f(_med([r['not_inspected'] for r in rows]))} %",
            _f(_med([r["auroc"] for r in rows])),
            _f(_med([r["f1_max"] for r in rows])),
        ] + [
            f"{_f(_med([100 * r['found'][k] if r['found'].get(k) is not None else None for r in rows]), 0)} %"
            for k in DEFECTS
        ]
        lines.append(f"| {names[m]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "F1@0.3 per station (median over seeds):",
        "",
        "| method | " + " | ".join(stations) + " |",
        "| --- | " + " | ".join("---:" for _ in stations) + " |",
    ]
    for m in METHODS:
        lines.append(
            f"| {names[m]} | "
            + " | ".join(_f(_med([results[s][m]["per_station"].get(st) for s in seeds])) for st in stations)
            + " |"
        )
    reg = [f"{results[s]['_registered']}/{results[s]['_stations']}" for s in seeds]
    ovr = [results[s].get("_build_refused", 0) for s in seeds]
    res = [_f(results[s]["_residual_px"], 2) for s in seeds]
    lines += [
        "",
        f"field path registered without --force: {', '.join(reg)} stations (per seed); "
        f"stations whose build the default gates refused: {ovr}; "
        f"median alignment residual of the live inspections: {', '.join(res)} px",
    ]
    best_base = max(_med([results[s][m]["f1"] for s in seeds]) or 0.0 for m in ("absdiff_otsu", "ssim"))
    lines.append(
        f"field path - best baseline: {(_med([results[s]['field']['f1'] for s in seeds]) or 0) - best_base:+.1f} F1 points"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--stations", nargs="+", default=list(STATIONS), choices=list(STATIONS))
    parser.add_argument("--out", type=Path, default=Path("out/real_photos"))
    parser.add_argument("--json", type=Path, default=None, help="also write the per-seed figures as JSON")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    camera = Camera()
    t0 = time.perf_counter()
    results = {s: run_seed(s, args.stations, args.out, camera) for s in args.seeds}
    print(render(results, args.stations))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
