"""The floor of the ROS layer on this machine: a frame in, a detection out, with no inspection between.

An echo process does what the inspector node does around its engine (raw subscription, keep-latest
slot, worker thread, CDR header decode, ``Detection2DArray`` publish) and nothing else; this process
publishes restamped frames at the camera rate and times the round trip. The median is what rclpy
and Fast DDS cost here for one frame, the part of ``bench/ros_node.py``'s ROS-added latency that no
change to the node can remove. Tiny and full-size frames, each executor, side by side.

    .venv/bin/python bench/ros_transport.py            # 300 frames per row
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

ECHO = """
import sys, threading
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray
from differad_edge_ros.conversions import detections_message, image_from_cdr
from differad_edge_ros.slot import LatestSlot
from differad_edge_ros.spin import make_executor, spin_until_shutdown

rclpy.init()
node = Node("transport_echo")
pub = node.create_publisher(Detection2DArray, "/transport/detections", 10)
slot = LatestSlot()

def work():
    while not slot.closed:
        raw = slot.take(0.2)
        if raw is not None:
            pub.publish(detections_message(image_from_cdr(raw).header, None))

def on_frame(raw):
    slot.put(raw)

threading.Thread(target=work, daemon=True).start()
node.create_subscription(Image, "/transport/camera", on_frame, qos_profile_sensor_data, raw=True)
try:
    spin_until_shutdown(make_executor(sys.argv[1], node))
except Exception:
    pass
slot.close()
"""


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="frames per row")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 800], help="square frame sides")
    ap.add_argument(
        "--executors", nargs="+", default=["events", "single_threaded"], choices=["events", "single_threaded"]
    )
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    return ap.parse_args()


def round_trips(args, env: dict[str, str], executor: str, size: int) -> np.ndarray:
    """Round-trip times (ms) of ``args.frames`` frames of ``size`` x ``size`` through an echo process."""
    from differad_edge_ros.conversions import array_to_image, cdr_stamp, restamp_cdr
    from differad_edge_ros.spin import make_executor, spin_until_shutdown
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2DArray

    echo = subprocess.Popen([sys.executable, "-c", ECHO, executor], env=env)
    node = Node(f"transport_bench_{executor}_{size}")
    sent: dict[tuple[int, int], int] = {}
    received: dict[tuple[int, int], int] = {}

    def on_detections(raw: bytes) -> None:
        now = time.time_ns()
        received[cdr_stamp(raw)] = now

    node.create_subscription(Detection2DArray, "/transport/detections", on_detections, QoSProfile(depth=100), raw=True)
    pub = node.create_publisher(
        Image, "/transport/camera", QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    )
    spinner = make_executor(executor, node)
    stop = threading.Event()
    thread = threading.Thread(target=spin_until_shutdown, args=(spinner,), kwargs={"stop": stop}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() < 1 or node.count_publishers("/transport/detections") < 1:
            if echo.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the echo process did not start")
            time.sleep(0.05)
        time.sleep(1.0)
        frame = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
        cdr = serialize_message(array_to_image(frame, "rgb8", Header(frame_id="camera")))
        t0 = time.perf_counter()
        for i in range(args.frames):
            now = time.time_ns()
            stamp = divmod(now, 10**9)
            sent[stamp] = now
            pub.publish(restamp_cdr(cdr, *stamp))
            delay = t0 + (i + 1) / args.fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(5)
        echo.terminate()
        echo.wait(10)
        spinner.shutdown()
        node.destroy_node()
    return np.array([(received[k] - sent[k]) / 1e6 for k in sent if k in received])


def main() -> int:
    args = parse_args()
    from differad_edge_ros.rosenv import cell_env, private_domain_id

    env = cell_env(private_domain_id())
    os.environ.update(env)
    import rclpy

    rclpy.init()
    lines = ["| executor | frame | round trips | median ms | p90 ms |", "| --- | --- | --- | --- | --- |"]
    try:
        for executor in args.executors:
            for size in args.sizes:
                rt = round_trips(args, env, executor, size)
                lines.append(
                    f"| {executor} | {size}x{size} rgb8 ({size * size * 3 / 1e6:.2f} MB) | "
                    f"{len(rt)}/{args.frames} | {np.median(rt):.2f} | {np.percentile(rt, 90):.2f} |"
                )
                print(lines[-1], flush=True)
    finally:
        rclpy.try_shutdown()
    table = "\n".join(lines)
    print(table)
    if not args.no_append:
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(args.results, "a", encoding="utf-8") as f:
            f.write(
                f"\n## ROS 2 transport floor ({when})\n\n`.venv/bin/python bench/ros_transport.py` on "
                f"{platform.node()} ({os.cpu_count()} CPU, shared): frame in -> Detection2DArray out through an "
                f"echo process shaped like the inspector node, no inspection, {args.fps:g} fps.\n\n{table}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
