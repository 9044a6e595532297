"""Cell monitor: scores the inspector's detections against the camera's ground truth, frame by frame.

Matches ``~/detections`` and the ground-truth topic by header stamp, prints one line per frame and a
summary (Acc@0.3 / F1 / mIoU from :mod:`differad_edge.metrics`, end-to-end latency, lost frames, the
node's last ``/diagnostics``), and writes annotated frames (prediction red, ground truth green) and
``summary.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from differad_edge.boxes import ZERO_BOX, Box
from differad_edge.fileio import atomic_write_json
from differad_edge.images import save_image
from differad_edge.metrics import Record, compute_metrics, is_positive, sample_iou
from differad_edge.viz import contact_sheet, draw_boxes

from .conversions import NOT_INSPECTED_CLASS_ID, detection_box, image_to_rgb

Stamp = tuple[int, int]


def stamp_of(msg: Any) -> Stamp:
    return (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))


def first_box(msg: Any) -> tuple[Box, float]:
    """The box and score of a Detection2DArray's first detection, or the zero box for an empty array."""
    if not msg.detections:
        return ZERO_BOX, 0.0
    det = msg.detections[0]
    return detection_box(det), float(det.results[0].hypothesis.score) if det.results else 0.0


@dataclass
class FrameResult:
    gt: Box | None = None
    pred: Box | None = None
    score: float = 0.0
    latency_ms: float | None = None
    image: np.ndarray | None = None
    not_inspected: str | None = None  # reason code of a NOT_INSPECTED frame


@dataclass
class CellLog:
    frames: dict[Stamp, FrameResult] = field(default_factory=dict)
    diagnostics: dict[str, str] = field(default_factory=dict)

    def get(self, stamp: Stamp) -> FrameResult:
        return self.frames.setdefault(stamp, FrameResult())

    def summary(self) -> dict[str, Any]:
        truth = [r for r in self.frames.values() if r.gt is not None]
        done = [r for r in truth if r.pred is not None]
        m = compute_metrics([Record(r.pred, r.gt) for r in done])
        lat = np.array([r.latency_ms for r in done if r.latency_ms is not None], dtype=np.float64)
        return {
            "frames_published": len(truth),
            "frames_inspected": len(done),
            "frames_lost": len(truth) - len(done) - sum(r.not_inspected is not None for r in truth),
            "frames_not_inspected": sum(r.not_inspected is not None for r in truth),
            "defective": sum(not r.gt.is_zero for r in truth),
            "acc30": m.acc30,
            "f1": m.f1,
            "miou": m.miou,
            "tp": m.tp,
            "fp": m.fp,
            "fn": m.fn,
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
            "node_diagnostics": self.diagnostics,
        }


class Monitor(Node):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("cell_monitor")
        self.args = args
        self.log = CellLog()
        self.last_activity = time.monotonic()
        self._detections = self.create_subscription(
            Detection2DArray, args.detections_topic, self._on_detections, QoSProfile(depth=100)
        )
        self.create_subscription(Detection2DArray, args.gt_topic, self._on_truth, QoSProfile(depth=100))
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._images: Any = None
        self._ready = self.create_timer(0.05, self._subscribe_images_when_matched) if args.save > 0 else None

    def _subscribe_images_when_matched(self) -> None:
        """Subscribe to the camera only once the inspector's detections reach this monitor.

        The camera starts when it sees its image subscribers; under load the detections topic can
        match seconds later, and the results published before that are lost (volatile QoS). Joining
        the camera's topic last makes "the monitor subscribes to images" mean "it will hear the answers".
        """
        if self._images is None and self._detections.get_publisher_count() > 0:
            self._images = self.create_subscription(
                Image, self.args.image_topic, self._on_image, qos_profile_sensor_data
            )
            assert self._ready is not None
            self._ready.cancel()

    def _on_truth(self, msg: Detection2DArray) -> None:
        self.log.get(stamp_of(msg)).gt = first_box(msg)[0]
        self.last_activity = time.monotonic()

    def _on_detections(self, msg: Detection2DArray) -> None:
        now = self.get_clock().now().nanoseconds
        r = self.log.get(stamp_of(msg))
        if (
            msg.detections
            and msg.detections[0].results
            and msg.detections[0].results[0].hypothesis.class_id == NOT_INSPECTED_CLASS_ID
        ):
            r.not_inspected = msg.detections[0].id or "not_inspected"  # scored as a miss, never as a good part
            self.last_activity = time.monotonic()
            if not self.args.quiet:
                print(
                    f"frame {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}: NOT INSPECTED ({r.not_inspected})",
                    flush=True,
                )
            return
        r.pred, r.score = first_box(msg)
        r.latency_ms = (now - (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)) / 1e6
        self.last_activity = time.monotonic()
        if not self.args.quiet:
            gt = r.gt.as_int_list() if r.gt is not None else "?"
            iou = f"{sample_iou(r.pred, r.gt):.2f}" if r.gt is not None else "?"
            pred = r.pred.as_int_list() if not r.pred.is_zero else "good part"
            print(
                f"frame {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}: {pred} (score {r.score:.2f}) "
                f"gt {gt} iou {iou} latency {r.latency_ms:.1f} ms",
                flush=True,
            )

    def _on_image(self, msg: Image) -> None:
        saved = sum(r.image is not None for r in self.log.frames.values())
        if saved < self.args.save:
            self.log.get(stamp_of(msg)).image = image_to_rgb(msg)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("differad_edge"):
                self.log.diagnostics = {kv.key: kv.value for kv in status.values}

    def finished(self) -> bool:
        done = sum(
            (r.pred is not None or r.not_inspected is not None) and r.gt is not None for r in self.log.frames.values()
        )
        idle = time.monotonic() - self.last_activity
        return done >= self.args.frames or (done > 0 and idle > self.args.idle_timeout)

    def write(self, out: Path) -> dict[str, Any]:
        """Annotated frames, a contact sheet and summary.json in ``out``; returns the summary."""
        out.mkdir(parents=True, exist_ok=True)
        sheet = []
        for i, (_, r) in enumerate(sorted(self.log.frames.items())):
            if r.image is None or r.gt is None:
                continue
            found = is_positive(r.pred)
            img = draw_boxes(r.image, r.pred, r.gt, label="defect" if found else "", score=r.score if found else None)
            save_image(out / f"frame_{i:04d}.png", img)
            sheet.append(img)
        if sheet:
            save_image(out / "contact_sheet.png", contact_sheet(sheet[:16], cols=4))
        summary = self.log.summary()
        atomic_write_json(out / "summary.json", summary)
        return summary


def format_summary(s: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f} %"

    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f} ms"

    d = s.get("node_diagnostics") or {}
    return "\n".join(
        [
            f"frames published {s['frames_published']} (defective {s['defective']}), inspected {s['frames_inspected']}, "
            f"not inspected {s.get('frames_not_inspected', 0)}, lost {s['frames_lost']}",
            f"Acc@0.3 {pct(s['acc30'])}  F1 {pct(s['f1'])}  mIoU {pct(s['miou'])}  (TP {s['tp']} FP {s['fp']} FN {s['fn']})",
            f"end-to-end latency p50 {ms(s['latency_p50_ms'])}  p95 {ms(s['latency_p95_ms'])}",
            f"node: dropped {d.get('frames_dropped', '?')}, bad frames {d.get('bad_frames', '?')}, engine errors "
            f"{d.get('engine_errors', '?')}, engine {d.get('engine', '?')}, reference {d.get('product_id', '?')}"
            f"@{d.get('reference_version', '?')}",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="differad-cell-monitor", description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames expected (exit once all are scored)")
    ap.add_argument("--out", type=Path, default=None, help="folder for annotated frames and summary.json")
    ap.add_argument("--save", type=int, default=16, help="annotated frames to keep (0: none)")
    ap.add_argument("--detections-topic", default="/inspector/detections")
    ap.add_argument("--gt-topic", default="/camera/ground_truth")
    ap.add_argument("--image-topic", default="/camera/image_raw")
    ap.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    ap.add_argument("--idle-timeout", type=float, default=5.0, help="stop this long after the last message")
    ap.add_argument("--quiet", action="store_true", help="no line per frame")
    a = ap.parse_args(argv)
    if a.out is None:
        a.save = 0
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rclpy.init()
    node = None
    try:
        node = Monitor(args)
        deadline = time.monotonic() + args.timeout
        while not node.finished() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        for _ in range(20):  # pick up the node's latest /diagnostics
            rclpy.spin_once(node, timeout_sec=0.05)
        summary = node.write(args.out) if args.out else node.log.summary()
        print(format_summary(summary), flush=True)
        return 0 if summary["frames_inspected"] > 0 else 1
    except (KeyboardInterrupt, ExternalShutdownException):
        return 130
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
