"""Benchmark of the ROS 2 inspector node: 30 fps of 800x800 frames over real DDS.

Measures, in one run: processed fps and drop rate at the camera rate, the end-to-end latency of a
frame through the node (publish -> Detection2DArray received; ~/result is published and timed too) against calling the inspector
directly on the same frames in this process (median, before and after the stream), and the node's
RSS over time. The direct calls go over every frame equally often, once at the camera rate (the
conditions the node's engine runs in: one frame every 1/fps s) and once back to back; the
ROS-added latency is end-to-end median minus the direct median at the camera rate, and the table
also gives it against the back-to-back median. One stream per rclpy executor (the node's and this
subscriber's), side by side. Appends a table to bench/RESULTS.md and writes a plot next to it.

    .venv/bin/python bench/ros_node.py                    # 60 s per executor
    .venv/bin/python bench/ros_node.py --duration 300 --executors events   # memory flat over 5 minutes?
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of streaming")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--engine", default="golden")
    ap.add_argument("--model", default="")
    ap.add_argument("--align", default="none", help="inspector alignment (none, euclidean, ...)")
    ap.add_argument(
        "--scene",
        choices=("synth", "shapes"),
        default="synth",
        help="synth: the part moves between frames (with --align none every frame deviates widely: the "
        "engine's worst case); shapes: a fixtured part, no motion (a cell's usual case)",
    )
    ap.add_argument(
        "--direct-calls",
        type=int,
        default=60,
        help="direct inspector calls before and after, each paced and back to back "
        "(rounded up to whole rounds of the 16 frames)",
    )
    ap.add_argument(
        "--executors",
        nargs="+",
        default=["events", "single_threaded"],
        choices=["events", "single_threaded"],
        help="one stream per executor (node and subscriber), side by side in the table",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OpenCV threads, in this process's direct calls and in the node (its cv_threads)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ros_node")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    return ap.parse_args()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def direct_latencies(inspector, frames, product: str, calls: int, period: float = 0.0) -> list[float]:
    """The inspector called in this process: what the node's work costs without ROS.

    Every frame is inspected equally often (``calls`` rounded up to whole rounds), as in the stream:
    the engine's time differs a lot between frames. ``period`` > 0 starts one call every ``period``
    seconds, as the camera delivers frames to the node (an engine called back to back runs with warm
    caches and busy OpenCV threads, and is faster than one called 30 times a second).
    """
    out = []
    start = time.perf_counter()
    for i in range(-(-calls // len(frames)) * len(frames)):
        if period > 0:
            delay = start + i * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        t0 = time.perf_counter()
        inspector.inspect(frames[i % len(frames)].image, product)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main() -> int:
    args = parse_args()
    import cv2

    cv2.setNumThreads(args.threads)
    from differad_edge_ros.rosenv import cell_env, private_domain_id

    env = cell_env(private_domain_id())
    os.environ.update(env)

    import rclpy
    from differad_edge_ros.cell_demo import PRODUCT, register_reference
    from differad_edge_ros.conversions import array_to_image
    from differad_edge_ros.scene import build_scene
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from differad_edge.alignment import AlignConfig
    from differad_edge.engines import create_engine
    from differad_edge.inspector import Inspector
    from differad_edge.store import ReferenceStore

    _, frames = build_scene(args.scene, args.size, 0, 16)
    # serialized once: each publish only restamps the bytes, as a C++ camera driver costs little per frame
    messages = [serialize_message(array_to_image(f.image, "rgb8", Header(frame_id="camera"))) for f in frames]
    columns: dict[str, dict] = {}
    runs: dict[str, Stream] = {}
    with tempfile.TemporaryDirectory(prefix="differad-bench-store-") as store_dir:
        register_reference(Path(store_dir), args.scene, args.size, 0)
        opts = {"model": args.model} if args.model else {}
        align = None if args.align == "none" else AlignConfig(motion=args.align)
        inspector = Inspector(create_engine(args.engine, **opts), store=ReferenceStore(store_dir), align=align)
        inspector.warm_up(PRODUCT)
        rclpy.init()
        try:
            for executor in args.executors:
                # direct calls right before and after each stream: the machine's state of that moment
                direct = direct_latencies(inspector, frames, PRODUCT, args.direct_calls, 1.0 / args.fps)
                direct_b2b = direct_latencies(inspector, frames, PRODUCT, args.direct_calls)
                run = stream(args, env, store_dir, messages, executor)
                direct += direct_latencies(inspector, frames, PRODUCT, args.direct_calls, 1.0 / args.fps)
                direct_b2b += direct_latencies(inspector, frames, PRODUCT, args.direct_calls)
                if run is None:
                    return 1
                run.direct, run.direct_b2b = np.array(direct), np.array(direct_b2b)
                runs[executor] = run
                columns[f"executor {executor}"] = run.row(args)
        finally:
            rclpy.try_shutdown()
            inspector.close()

    table = render(columns)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(args.out / "ros_node.png", runs, args)
    if not args.no_append:
        append_results(args, table)
    return 0 if all(r.exit_code == 0 for r in runs.values()) else 1


class Stream:
    """What one stream through the node gave: send/receive times, the node's diagnostics and RSS."""

    def __init__(self) -> None:
        self.sent: dict[tuple[int, int], int] = {}
        self.received: dict[tuple[int, int], int] = {}
        self.results: dict[tuple[int, int], int] = {}  # ~/result (InspectionResult) arrivals
        self.publish_ms: list[float] = []  # the camera's publish() call, part of the end-to-end time
        self.diagnostics: dict[str, str] = {}
        self.rss: list[tuple[float, float]] = []
        self.seconds = 0.0
        self.exit_code: int | None = None
        self.direct = self.direct_b2b = np.zeros(0)

    def e2e(self, received: dict[tuple[int, int], int] | None = None) -> np.ndarray:
        got = self.received if received is None else received
        return np.array([(got[k] - self.sent[k]) / 1e6 for k in self.sent if k in got])

    def row(self, args) -> dict:
        e2e, d = self.e2e(), self.diagnostics
        rss = np.array(self.rss) if self.rss else np.zeros((0, 2))
        steady = rss[rss[:, 0] > min(10.0, args.duration / 4)] if rss.size else rss
        slope = float(np.polyfit(steady[:, 0], steady[:, 1], 1)[0] * 60) if len(steady) > 2 else float("nan")
        med = float(np.median(e2e)) if e2e.size else float("nan")
        node_inspect = float(d.get("inspect_p50_ms", "nan"))
        node_latency = float(d.get("latency_p50_ms", "nan"))
        return {
            "frames sent": len(self.sent),
            "detections received": len(e2e),
            "results received (~/result)": len(self.e2e(self.results)),
            "node frames in": d.get("frames_in", "?"),
            "dropped in node (keep-latest)": d.get("frames_dropped", "?"),
            "processed fps": len(e2e) / self.seconds,
            "drop rate": 1.0 - len(e2e) / max(1, len(self.sent)),
            "direct inspect median ms (at the camera rate)": float(np.median(self.direct)),
            "direct inspect p95 ms (at the camera rate)": float(np.percentile(self.direct, 95)),
            "direct inspect median ms (back to back)": float(np.median(self.direct_b2b)),
            "end-to-end median ms": med,
            "end-to-end p95 ms": float(np.percentile(e2e, 95)) if e2e.size else float("nan"),
            "ROS-added median ms (vs direct)": med - float(np.median(self.direct)),
            "ROS-added median ms, ~/result (vs direct)": (
                float(np.median(self.e2e(self.results))) - float(np.median(self.direct))
            )
            if self.results
            else float("nan"),
            "ROS-added median ms (vs direct back to back)": med - float(np.median(self.direct_b2b)),
            "node inspect p50 ms (same frames, in node)": node_inspect,
            "node receipt->publish p50 ms": node_latency,
            "ROS-added median ms (vs node inspect)": med - node_inspect,
            "breakdown: camera publish() call p50 ms (wall time, CPU waits included)": float(
                np.median(self.publish_ms)
            ),
            "breakdown: in node, receipt->publish minus inspect (p50s) ms": node_latency - node_inspect,
            "breakdown: DDS + executors both ways, end-to-end minus receipt->publish (medians) ms": med - node_latency,
            "node RSS start / end / max MB": (
                f"{steady[0, 1]:.0f} / {steady[-1, 1]:.0f} / {steady[:, 1].max():.0f}" if len(steady) else "n/a"
            ),
            "node RSS slope MB/min": slope,
            "node exit code (SIGINT)": self.exit_code,
        }


def stream(args, env: dict[str, str], store_dir: str, messages: list[bytes], executor: str) -> Stream | None:
    """Start the node with ``executor``, stream ``args.duration`` s of frames through it, stop it with SIGINT."""
    from diagnostic_msgs.msg import DiagnosticArray
    from differad_edge_msgs.msg import InspectionResult
    from differad_edge_ros.cell_demo import PRODUCT
    from differad_edge_ros.conversions import cdr_stamp, restamp_cdr
    from differad_edge_ros.spin import make_executor, spin_until_shutdown
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from tqdm import tqdm
    from vision_msgs.msg import Detection2DArray

    run = Stream()
    topic = f"/bench/camera_{executor}"
    params = {
        "store": store_dir,
        "product_id": PRODUCT,
        "engine": args.engine,
        "align": args.align,
        "model": args.model,
        "image_topic": topic,
        "diagnostics_period": 1.0,
        "executor": executor,
        "cv_threads": args.threads,
        "latency_window": 100_000,
    }  # percentiles over the whole run
    cmd = [sys.executable, "-m", "differad_edge_ros.node", "--ros-args"]
    cmd += [x for k, v in params.items() if v != "" for x in ("-p", f"{k}:={v}")]
    node_proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    client = Node(f"ros_node_bench_{executor}")

    def on_detections(raw: bytes) -> None:
        # the arrival time first; a raw subscription: only the stamp is read from the CDR bytes
        now = time.time_ns()
        run.received[cdr_stamp(raw)] = now

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name.startswith("differad_edge"):
                run.diagnostics = {kv.key: kv.value for kv in s.values}

    def on_result(raw: bytes) -> None:
        now = time.time_ns()
        run.results[cdr_stamp(raw)] = now

    client.create_subscription(
        Detection2DArray, "/inspector/detections", on_detections, QoSProfile(depth=100), raw=True
    )
    client.create_subscription(InspectionResult, "/inspector/result", on_result, QoSProfile(depth=100), raw=True)
    client.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    pub = client.create_publisher(Image, topic, QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    spinner = make_executor(executor, client)
    stop = threading.Event()
    threads = [threading.Thread(target=spin_until_shutdown, args=(spinner,), kwargs={"stop": stop}, daemon=True)]
    threads[0].start()
    try:
        deadline = time.monotonic() + 60
        while pub.get_subscription_count() < 1:
            if node_proc.poll() is not None or time.monotonic() > deadline:
                print(f"the inspector did not start:\n{node_proc.stderr.read()}", file=sys.stderr)
                return None
            time.sleep(0.05)
        time.sleep(1.0)

        t_start = time.monotonic()

        def sample() -> None:
            while not stop.wait(1.0):
                value = rss_mb(node_proc.pid)
                if value is not None:
                    run.rss.append((time.monotonic() - t_start, value))

        threads.append(threading.Thread(target=sample, daemon=True))
        threads[-1].start()
        n = int(args.duration * args.fps)
        t0 = time.perf_counter()
        for i in tqdm(range(n), desc=f"{executor}: streaming {args.fps:g} fps", unit="frame", mininterval=2.0):
            now = time.time_ns()
            stamp = divmod(now, 10**9)
            run.sent[stamp] = now
            pub.publish(restamp_cdr(messages[i % len(messages)], *stamp))
            run.publish_ms.append((time.time_ns() - now) / 1e6)
            delay = t0 + (i + 1) / args.fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        run.seconds = time.perf_counter() - t0
        time.sleep(2.0)  # the last frames and a final /diagnostics
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        if node_proc.poll() is None:
            node_proc.send_signal(signal.SIGINT)
        run.exit_code = node_proc.wait(30)
        spinner.shutdown()
        client.destroy_node()
    return run


def render(columns: dict[str, dict]) -> str:
    """A markdown table: one row per metric, one column per stream."""
    names = list(columns)
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for key in columns[names[0]]:
        cells = []
        for name in names:
            v = columns[name][key]
            if isinstance(v, float):
                v = f"{100 * v:.1f} %" if key == "drop rate" else f"{v:.2f}"
            cells.append(str(v))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(path: Path, runs: dict[str, Stream], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in runs.items():
        if run.rss:
            rss = np.array(run.rss)
            a.plot(rss[:, 0], rss[:, 1], label=name)
        t0 = min(run.sent.values())
        keys = sorted(k for k in run.sent if k in run.received)
        b.plot(
            [(run.sent[k] - t0) / 1e9 for k in keys],
            [(run.received[k] - run.sent[k]) / 1e6 for k in keys],
            ".",
            ms=2,
            label=f"end-to-end via ROS, {name}",
        )
    a.set(title="inspector node RSS", xlabel="s", ylabel="MB")
    a.legend()
    direct = np.concatenate([r.direct for r in runs.values()])
    b.axhline(float(np.median(direct)), color="r", label="direct inspect (median)")
    b.set(
        title=f"latency, {args.fps:g} fps {args.size}x{args.size} {args.engine} align={args.align}",
        xlabel="s",
        ylabel="ms",
    )
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def append_results(args, table: str) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = (
        f".venv/bin/python bench/ros_node.py --duration {args.duration:g} --fps {args.fps:g} --size {args.size} "
        f"--engine {args.engine} --align {args.align} --scene {args.scene} --executors {' '.join(args.executors)}"
    )
    text = (
        f"\n## ROS 2 inspector node ({when})\n\n`{cmd}` on {platform.node()} ({os.cpu_count()} CPU, shared), "
        f"Fast DDS SHM profile, best-effort camera QoS; camera: pre-serialized frames, restamped; node: raw (CDR) "
        f"image subscription, reference warmed up at start. ROS-added = end-to-end "
        f"median - direct inspect median, the direct calls at the camera rate on the same frames (back-to-back "
        f"figure below it).\n\n{table}\n"
    )
    if not args.results.exists():
        text = "# Benchmark results\n" + text
    with open(args.results, "a", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
