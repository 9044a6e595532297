"""A simulated inspection cell on real ROS 2, in one command (``differad-cell-demo``).

Registers the simulated product in a temporary reference store, then runs three processes on a
private DDS domain (localhost only, shared-memory Fast DDS profile): the inspector node, a camera
simulator publishing frames at ``--rate`` and a monitor scoring each detection against ground truth.
Exits 0 with the monitor's summary once every frame is scored; annotated frames go to ``--out``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from differad_edge.alignment import Motion
from differad_edge.engines import ENGINES
from differad_edge.store import ReferenceStore

from .params import ALIGN_MODES
from .rosenv import cell_env, private_domain_id
from .scene import SCENES, build_scene

PRODUCT = "sim-part"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="differad-cell-demo", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=Path("demo_out/cell"), help="folder for annotated frames + summary.json"
    )
    ap.add_argument("--frames", type=int, default=30, help="frames the camera publishes")
    ap.add_argument("--rate", type=float, default=5.0, help="camera frames per second")
    ap.add_argument("--size", type=int, default=800, help="square frame side in pixels")
    ap.add_argument("--scene", default="synth", choices=SCENES)
    ap.add_argument("--defect-rate", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", default="golden", choices=sorted(ENGINES))
    ap.add_argument("--model", default="", help="model folder (vlm) or bundle (onnx)")
    ap.add_argument("--align", default=str(Motion.EUCLIDEAN), choices=ALIGN_MODES)
    ap.add_argument("--domain-id", type=int, default=None, help="DDS domain (default: derived from the pid)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds before the demo gives up")
    a = ap.parse_args(argv)
    if a.frames < 1 or a.rate <= 0:
        ap.error("need --frames >= 1 and --rate > 0")
    return a


def register_reference(root: Path, scene: str, size: int, seed: int) -> str:
    """The simulated product's reference as the active version of a fresh store; returns the version."""
    store = ReferenceStore(root)
    reference, _ = build_scene(scene, size, seed, 0)
    version = store.add_version(
        PRODUCT, reference, metadata={"source": f"differad-cell-demo scene={scene} seed={seed}"}
    )
    store.set_validation(PRODUCT, version, True, {"by": "differad-cell-demo", "note": "simulated reference"})
    store.promote(PRODUCT, version)
    return version


def _module(name: str) -> list[str]:
    return [sys.executable, "-m", f"differad_edge_ros.{name}"]


def _stop(proc: subprocess.Popen, timeout: float = 15.0, grace: float = 0.0) -> int:
    """``grace`` s to end by itself, then SIGINT, then SIGKILL if it does not end; the exit code."""
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def run(args: argparse.Namespace) -> int:
    env = cell_env(args.domain_id if args.domain_id is not None else private_domain_id())
    with tempfile.TemporaryDirectory(prefix="differad-cell-store-") as store:
        version = register_reference(Path(store), args.scene, args.size, args.seed)
        print(f"cell: reference {PRODUCT}@{version} registered; ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}", flush=True)
        params = {
            "store": store,
            "product_id": PRODUCT,
            "engine": args.engine,
            "align": args.align,
            "model": args.model,
            "image_topic": "/camera/image_raw",
            "expected_rate": args.rate,
        }  # gaps in the camera's stamps show as lost frames
        node = subprocess.Popen(
            _module("node") + ["--ros-args"] + [x for k, v in params.items() for x in ("-p", f"{k}:={v}") if v], env=env
        )
        monitor = subprocess.Popen(
            _module("monitor") + ["--frames", str(args.frames), "--out", str(args.out), "--timeout", str(args.timeout)],
            env=env,
        )
        camera = subprocess.Popen(
            _module("camera_sim")
            + [
                "--frames",
                str(args.frames),
                "--rate",
                str(args.rate),
                "--size",
                str(args.size),
                "--scene",
                args.scene,
                "--seed",
                str(args.seed),
                "--defect-rate",
                str(args.defect_rate),
                "--wait-subscribers",
                "2",
                "--wait-truth",
                "1",
                "--wait-timeout",
                str(args.timeout),
            ],
            env=env,
        )
        procs = {"inspector": node, "monitor": monitor, "camera": camera}
        try:
            deadline = time.monotonic() + args.timeout + 30
            while monitor.poll() is None and time.monotonic() < deadline:
                if node.poll() is not None:
                    print(f"cell: the inspector exited early with code {node.returncode}", file=sys.stderr)
                    break
                time.sleep(0.2)
        finally:
            # the camera ends by itself about 1 s after its last frame: a SIGINT while it shuts down
            # rclpy would kill it with the default handler instead of letting it exit 0
            codes = {name: _stop(p, grace=5.0 if name == "camera" else 0.0) for name, p in procs.items()}
    failed = {k: v for k, v in codes.items() if v != 0}
    if failed:
        print(f"cell: processes failed: {failed}", file=sys.stderr)
        return 1
    print(f"cell: all processes exited cleanly; annotated frames and summary.json in {args.out}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
