"""Camera simulator: publishes frames of one product at a set rate, plus their ground truth.

Frames are synthetic (``--scene``) or the user's own (``--source DIR`` of images, or a video file),
and go out on ``--topic`` (``sensor_msgs/Image``), or with ``--compressed`` as
``sensor_msgs/CompressedImage`` on image_transport's ``<topic>/compressed``. For synthetic frames the
true box of each goes out on ``--gt-topic`` as a ``vision_msgs/Detection2DArray`` with the same
header (empty for a good part), so a monitor can score the inspector frame by frame.
``--register STORE`` registers the first frame (or ``--reference FILE``) as the validated, active
reference of ``--product`` in that store first, so an inspector can be pointed at it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from differad_edge.errors import DifferadError, ImageError

from .conversions import ENCODINGS, array_to_compressed, array_to_image, detections_message, restamp_cdr
from .scene import SCENES, Frame, build_scene


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="differad-camera-sim", description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames to publish (then exit)")
    ap.add_argument("--rate", type=float, default=10.0, help="frames per second")
    ap.add_argument("--size", type=int, default=800, help="square frame side in pixels")
    ap.add_argument("--scene", default="synth", choices=SCENES, help="synthetic product (see scene.build_scene)")
    ap.add_argument(
        "--seed", type=int, default=0, help="scene seed (the reference is build_scene(scene, size, seed, 0))"
    )
    ap.add_argument("--defect-rate", type=float, default=0.5, help="share of defective parts")
    ap.add_argument("--encoding", default="rgb8", choices=sorted(ENCODINGS))
    ap.add_argument("--compressed", action="store_true", help="publish sensor_msgs/CompressedImage (jpeg)")
    ap.add_argument("--topic", default="/camera/image_raw")
    ap.add_argument("--gt-topic", default="/camera/ground_truth")
    ap.add_argument("--frame-id", default="camera")
    ap.add_argument("--unique", type=int, default=32, help="distinct frames generated (cycled beyond)")
    ap.add_argument("--wait-subscribers", type=int, default=1, help="image subscribers to wait for before starting")
    ap.add_argument("--wait-truth", type=int, default=0, help="ground-truth subscribers to wait for")
    ap.add_argument("--wait-timeout", type=float, default=60.0, help="seconds to wait for them")
    ap.add_argument("--reliable", action="store_true", help="reliable QoS (default: best effort, as a camera driver)")
    ap.add_argument(
        "--source",
        type=Path,
        default=None,
        metavar="DIR|VIDEO",
        help="replay these images (a folder, in name order) or video frames instead of a synthetic scene",
    )
    ap.add_argument(
        "--register",
        type=Path,
        default=None,
        metavar="STORE",
        help="register the reference of --product in this store (created if missing) before publishing",
    )
    ap.add_argument("--product", default="camera-part", help="product id for --register")
    ap.add_argument(
        "--reference",
        type=Path,
        default=None,
        metavar="FILE",
        help="reference image for --register (default: the first frame)",
    )
    a = ap.parse_args(argv)
    if a.frames < 1 or a.rate <= 0 or a.size < 64 or not 0 <= a.defect_rate <= 1 or a.unique < 1:
        ap.error("need --frames >= 1, --rate > 0, --size >= 64, 0 <= --defect-rate <= 1, --unique >= 1")
    if a.source is not None and not a.source.exists():
        ap.error(f"--source {str(a.source)!r} does not exist; give a folder of images or a video file")
    return a


#: Image file suffixes a --source folder is read for.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def load_source(source: Path, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` uint8 RGB frames of a folder of images (name order) or a video; ImageError when
    there are none or one cannot be read."""
    from differad_edge.images import load_image

    if source.is_dir():
        files = sorted(f for f in source.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ImageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {source}")
        return [load_image(f) for f in files[:limit]]
    import cv2

    cap = cv2.VideoCapture(str(source))
    frames = []
    try:
        while len(frames) < limit:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise ImageError(f"{source} is neither a folder of images nor a video OpenCV can read")
    return frames


def register_source(store_root: Path, product: str, reference: np.ndarray, origin: str) -> str:
    """``reference`` as the validated, active version of ``product`` in ``store_root``; the version."""
    from differad_edge.store import ReferenceStore

    store = ReferenceStore(store_root)
    version = store.add_version(product, reference, metadata={"source": f"differad-camera-sim {origin}"})
    store.set_validation(product, version, True, {"by": "differad-camera-sim", "note": "registered from --source"})
    store.promote(product, version)
    return version


class CameraSim(Node):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("camera_sim")
        self.args = args
        reliability = ReliabilityPolicy.RELIABLE if args.reliable else ReliabilityPolicy.BEST_EFFORT
        self.topic = f"{args.topic.rstrip('/')}/compressed" if args.compressed else args.topic  # image_transport
        self._images = self.create_publisher(
            CompressedImage if args.compressed else Image, self.topic, QoSProfile(depth=5, reliability=reliability)
        )
        self._truth = self.create_publisher(Detection2DArray, args.gt_topic, QoSProfile(depth=100))
        if args.source is not None:
            self.frames = [Frame(img, None) for img in load_source(args.source, min(args.unique, args.frames))]
        else:
            _, self.frames = build_scene(
                args.scene, args.size, args.seed, min(args.unique, args.frames), args.defect_rate
            )
        # each distinct frame is converted and serialized once; a publish then only restamps the bytes
        header = Header(frame_id=args.frame_id)
        self._serialized = [
            serialize_message(
                array_to_compressed(f.image, header=header)
                if args.compressed
                else array_to_image(f.image, args.encoding, header=header)
            )
            for f in self.frames
        ]

    def wait_for_subscribers(self) -> bool:
        deadline = time.monotonic() + self.args.wait_timeout
        while (
            self._images.get_subscription_count() < self.args.wait_subscribers
            or self._truth.get_subscription_count() < self.args.wait_truth
        ):
            if time.monotonic() > deadline:
                return False
            rclpy.spin_once(self, timeout_sec=0.05)
        return True

    def run(self) -> int:
        """Publish every frame on schedule; returns the number published."""
        t0 = time.perf_counter()
        for i in range(self.args.frames):
            frame = self.frames[i % len(self.frames)]
            header = Header(frame_id=self.args.frame_id, stamp=self.get_clock().now().to_msg())
            if frame.box is not None:  # the user's own frames have no ground truth
                self._truth.publish(detections_message(header, frame.box, 1.0))
            self._images.publish(
                restamp_cdr(self._serialized[i % len(self.frames)], header.stamp.sec, header.stamp.nanosec)
            )
            delay = t0 + (i + 1) / self.args.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        return self.args.frames


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.register is not None:
            reference = (
                load_image_file(args.reference)
                if args.reference is not None
                else load_source(args.source, 1)[0]
                if args.source is not None
                else build_scene(args.scene, args.size, args.seed, 0)[0]
            )
            version = register_source(
                args.register,
                args.product,
                reference,
                str(args.reference or args.source or f"scene={args.scene} seed={args.seed}"),
            )
            print(
                f"camera_sim: registered {args.product}@{version} in {args.register}; inspect with: "
                f"differad-inspector --ros-args -p store:={args.register} -p product_id:={args.product} "
                f"-p image_topic:={args.topic}{' -p input:=compressed' if args.compressed else ''}",
                flush=True,
            )
        return _run(args)
    except DifferadError as e:
        print(f"differad: error: camera_sim: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a SIGINT after rclpy's handlers are gone (while shutting down): a stop too
        return 0


def load_image_file(path: Path) -> np.ndarray:
    from differad_edge.images import load_image

    return load_image(path)


def _run(args: argparse.Namespace) -> int:
    rclpy.init()
    node = None
    try:
        node = CameraSim(args)
        if not node.wait_for_subscribers():
            print(f"camera_sim: no subscriber on {node.topic} after {args.wait_timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(0.5)  # let the subscribers' matching finish on every transport
        sent = node.run()
        print(f"camera_sim: published {sent} frames on {node.topic} at {args.rate:g} Hz", flush=True)
        time.sleep(1.0)  # keep the writer alive while reliable readers catch up on the ground truth
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
