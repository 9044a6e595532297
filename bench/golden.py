"""Benchmark: alignment and the golden engine at 800x800 on one CPU core (issue 2, section 5).

Targets: golden engine >= 100 frames/s, alignment <= 20 ms per frame. Both are measured in the same
run on the same synthetic part (textured, moved by a small rigid motion, with and without a drawn
defect); the table gives medians and p90 per case and the ratio to the target. The engine runs
with every check on: photometric normalization (a gain + gradient lit frame takes the local path),
hysteresis, fragment merging and the alignment's validity mask (the warp seam).

    .venv/bin/python bench/golden.py                # 800x800, 60 frames per case
    .venv/bin/python bench/golden.py --frames 200 --plot bench/golden.png
"""

from __future__ import annotations

import os

# One core, one thread: set before numpy/OpenCV start their pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from differad_edge.alignment import AlignConfig, Aligner  # noqa: E402
from differad_edge.engines import Reference  # noqa: E402
from differad_edge.engines.golden import GoldenEngine  # noqa: E402
from differad_edge.inspector import Inspector  # noqa: E402

ALIGN_TARGET_MS = 20.0
GOLDEN_TARGET_FPS = 100.0


def make_part(size: int, seed: int) -> np.ndarray:
    """Textured RGB part with sharp discs and bars (what ECC and the golden model both meet)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (size // 16, size // 16)).astype(np.float32)
    img = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
    img = (img - img.min()) / (img.max() - img.min()) * 100 + 70
    for _ in range(12):
        c = tuple(int(v) for v in rng.integers(size // 8, size - size // 8, 2))
        cv2.circle(img, c, int(rng.integers(size // 30, size // 10)), float(rng.integers(40, 220)), -1)
    for _ in range(6):
        p = rng.integers(0, size, 4)
        cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), float(rng.integers(40, 220)), 5)
    gray = cv2.GaussianBlur(img, (0, 0), 1.5)
    return np.clip(np.dstack([gray, gray * 0.8 + 30, gray * 0.6 + 50]), 0, 255).astype(np.uint8)


def moved(img: np.ndarray, angle: float, dx: float, dy: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[:, 2] += (dx, dy)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.clip(out + rng.normal(0, 2.0, out.shape), 0, 255).astype(np.uint8)


@dataclass
class Row:
    group: str
    case: str
    times_ms: list[float]
    cpu_ms: list[float]
    note: str = ""

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_ms)

    def met(self, ms: float) -> bool | None:
        if self.group == "alignment" and "fallback" not in self.case:
            return ms <= ALIGN_TARGET_MS
        if self.group == "golden":
            return 1000.0 / ms >= GOLDEN_TARGET_FPS
        return None

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p90(self) -> float:
        return float(np.percentile(self.times_ms, 90))


def timed(fn: Callable[[], object], frames: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Wall and CPU (this thread) milliseconds per call. CPU time excludes waiting for the core,
    so it stays meaningful on a machine shared with other jobs; wall time is what a cell sees."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(frames):
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        wall.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.thread_time() - c0) * 1000.0)
    return wall, cpu


def run(size: int, frames: int) -> list[Row]:
    rng = np.random.default_rng(0)
    ref = make_part(size, seed=0)
    good = moved(ref, 1.5, 6.0, -4.0, rng)
    bad = good.copy()
    cv2.circle(bad, (size // 3, size // 2), size // 40, (15, 15, 15), -1)
    far = moved(ref, 0.0, size * 0.25, size * 0.15, rng)
    rows: list[Row] = []

    aligner = Aligner(ref, AlignConfig(motion="euclidean"))
    for case, frame, cfg in (
        ("identity (already aligned)", ref.copy(), AlignConfig()),
        ("ECC euclidean, 1.5 deg + (6,-4) px", good, AlignConfig(motion="euclidean")),
        ("ECC translation, (6,-4) px", moved(ref, 0.0, 6.0, -4.0, rng), AlignConfig(motion="translation")),
        ("ECC homography, 1.5 deg + (6,-4) px", good, AlignConfig(motion="homography")),
        ("ORB fallback, (25%, 15%) shift", far, AlignConfig(motion="euclidean")),
    ):
        a = aligner if cfg == aligner.config else Aligner(ref, cfg)
        result = a.align(frame)
        note = f"{result.method}, ok={result.ok}, score={result.score:.3f}"
        rows.append(Row("alignment", case, *timed(lambda a=a, f=frame: a.align(f), frames), note))

    aligner = Aligner(ref, AlignConfig(motion="homography"))  # the default model
    res_good, res_bad = aligner.align(good), aligner.align(bad)
    aligned_good, aligned_bad, seam = res_good.aligned, res_bad.aligned, res_good.valid
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    light = (1.1 + 0.1 * (xx - size / 2) / (size / 2))[:, :, None]  # +10 % gain, +-10 % gradient
    aligned_lit = np.clip(aligned_good * light + 5, 0, 255).astype(np.uint8)
    # salt-and-pepper specks: out of tolerance but no blob after morphology, so the score scans the
    # whole frame (the slowest path of the engine: 26 ms before it used OpenCV ops)
    aligned_noisy = aligned_good.copy()
    ys, xs = rng.integers(0, size, 400), rng.integers(0, size, 400)
    aligned_noisy[ys, xs] = np.where(rng.random(400) < 0.5, 0, 255)[:, None].astype(np.uint8)
    for channels in ("rgb", "gray"):
        engine = GoldenEngine(channels=channels)
        handle = engine.prepare(Reference(ref))
        for case, frame in (
            ("good part", aligned_good),
            ("good part, noisy specks", aligned_noisy),
            ("good part, gain + gradient light", aligned_lit),
            ("defective part", aligned_bad),
        ):
            det = engine.detect(handle, frame, valid=seam)
            note = f"anomaly={det.anomaly}, score={det.score:.3f}"
            fn = lambda e=engine, h=handle, f=frame: e.detect(h, f, valid=seam)  # noqa: E731
            rows.append(Row("golden", f"{channels}, {case}", *timed(fn, frames), note))

    inspector = Inspector(GoldenEngine(), align=AlignConfig())  # homography, robust refit, residual
    reference = Reference(ref, product_id="bench")
    res = inspector.inspect_pair(reference, bad)
    note = f"anomaly={res.anomaly}, box={res.detection.box.as_int_list() if res.detection.box else None}"
    fn = lambda: inspector.inspect_pair(reference, bad)  # noqa: E731
    rows.append(Row("pipeline", "align + golden (rgb), defective", *timed(fn, frames), note))
    return rows


def render(rows: list[Row], size: int, frames: int) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"golden bench: {size}x{size}, {frames} frames per case, 1 core, cv2 threads={cv2.getNumThreads()}, "
        f"OpenCV {cv2.__version__}, {platform.processor() or platform.machine()}, load average {load:.1f}",
        "",
        "| group | case | median ms | p90 ms | CPU ms | frames/s | target | ratio | met (wall) | met (CPU) |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for r in rows:
        fps = 1000.0 / r.median
        met, met_cpu = r.met(r.median), r.met(r.cpu_median)
        if met is None:
            target, ratio = "-", "-"
        elif r.group == "alignment":
            target, ratio = f"<= {ALIGN_TARGET_MS:.0f} ms", f"{ALIGN_TARGET_MS / r.median:.1f}x"
        else:
            target, ratio = f">= {GOLDEN_TARGET_FPS:.0f} fps", f"{fps / GOLDEN_TARGET_FPS:.1f}x"
        yn = {None: "-", True: "yes", False: "NO"}
        lines.append(
            f"| {r.group} | {r.case} | {r.median:.2f} | {r.p90:.2f} | {r.cpu_median:.2f} | {fps:.0f} | {target} "
            f"| {ratio} | {yn[met]} | {yn[met_cpu]} |"
        )
    lines.append("")
    lines += [f"- {r.group} / {r.case}: {r.note}" for r in rows if r.note]
    lines.append("(ratio = target / median wall time; the ORB fallback has no target: it runs only when ECC")
    lines.append(" cannot register a badly placed part; CPU ms excludes time spent waiting for a shared core)")
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    labels = [f"{r.group}: {r.case}" for r in rows]
    ax.barh(
        labels,
        [r.median for r in rows],
        color=[{"alignment": "tab:blue", "golden": "tab:green"}.get(r.group, "tab:gray") for r in rows],
    )
    ax.axvline(ALIGN_TARGET_MS, color="tab:red", ls="--", label=f"alignment target {ALIGN_TARGET_MS:.0f} ms")
    ax.axvline(
        1000 / GOLDEN_TARGET_FPS, color="tab:orange", ls=":", label=f"golden target {1000 / GOLDEN_TARGET_FPS:.0f} ms"
    )
    ax.invert_yaxis()
    ax.set_xlabel("median ms per frame (one core)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=800, help="image side in pixels (default 800)")
    parser.add_argument("--frames", type=int, default=60, help="timed frames per case (default 60)")
    parser.add_argument("--plot", type=Path, default=None, help="also save a bar chart (PNG)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rows = run(args.size, args.frames)
    print(render(rows, args.size, args.frames))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")
    wall_ok = all(r.met(r.median) is not False for r in rows)
    cpu_ok = all(r.met(r.cpu_median) is not False for r in rows)
    print(
        f"targets on wall-clock medians: {'met' if wall_ok else 'MISSED'}; on CPU-time medians: "
        f"{'met' if cpu_ok else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
