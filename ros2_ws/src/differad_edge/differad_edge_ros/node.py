"""Node ``inspector``: camera frames in, ``vision_msgs/Detection2DArray`` out, health on ``/diagnostics``.

A thin adapter over :class:`differad_edge.inspector.Inspector`. The subscription callback only
stamps the frame and drops it into a keep-latest slot; one worker thread decodes, inspects and
publishes, so a slow engine never blocks the executor (parameter, topic and timer callbacks).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from vision_msgs.msg import Detection2DArray

from differad_edge.alignment import AlignConfig
from differad_edge.engines import create_engine
from differad_edge.errors import AlignmentError, DifferadError, ImageError, ReferenceError
from differad_edge.inspector import Inspector
from differad_edge.store import ReferenceStore

from .conversions import array_to_image, compressed_to_rgb, detections_message, image_from_cdr, image_to_rgb
from .params import InspectorParams, check_product_id
from .slot import LatestSlot
from .spin import make_executor, spin_until_shutdown
from .stats import NodeStats

RCLError = _rclpy.RCLError

DESCRIPTIONS = {
    "store": "reference store folder (differad_edge.store.ReferenceStore)",
    "product_id": "product whose active reference each frame is compared with; switchable at run time",
    "engine": "detector: golden (default), vlm or onnx",
    "model": "model folder (vlm) or export bundle (onnx)",
    "engine_options": "JSON object of extra engine constructor options",
    "input": "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)",
    "image_topic": "camera topic",
    "qos": "sensor_data (best effort, keep last 5) or reliable",
    "align": "alignment of each frame onto the reference: none, translation, euclidean, affine, homography",
    "publish_annotated": "also publish ~/annotated (sensor_msgs/Image rgb8 with the box drawn)",
    "diagnostics_period": "seconds between /diagnostics messages",
    "latency_window": "number of recent frames the latency percentiles cover",
    "cv_threads": "OpenCV threads of this process (golden engine, alignment); 0: OpenCV's default (all cores)",
    "executor": "events (rclpy's C++ events executor; single-threaded where rclpy lacks it) or single_threaded",
}


class InspectorNode(Node):
    """Pairs each camera frame with the active reference of ``product_id`` and publishes the defect box."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("inspector", **node_kwargs)
        self.params = InspectorParams.from_values(self._declare_parameters())
        self.store = ReferenceStore(self.params.store)
        self._product = self._require_product(self.params.product_id)
        self.stats = NodeStats(self.params.latency_window)
        self._reference_version = ""
        self.inspector = self._make_inspector()

        self._detections = self.create_publisher(Detection2DArray, "~/detections", 10)
        self._annotated = self.create_publisher(Image, "~/annotated", 2) if self.params.publish_annotated else None
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_subscription(String, "~/product_id", self._on_product_topic, 10)
        self.create_timer(self.params.diagnostics_period, self._publish_diagnostics)

        self._slot: LatestSlot[tuple[Any, float]] = LatestSlot()
        self._worker = threading.Thread(target=self._work, name="inspector-worker", daemon=True)
        self._worker.start()
        # Subscribe last: a publisher that sees this subscription knows the node is ready.
        qos = qos_profile_sensor_data if self.params.qos == "sensor_data" else QoSProfile(depth=5)
        # Raw frames arrive as their CDR bytes (raw=True) and are read in the worker by image_from_cdr:
        # the pixels stay a zero-copy view, rclpy's deserialization (two copies of 1.9 MB) is skipped.
        raw = self.params.input == "raw"
        msg_type = Image if raw else CompressedImage
        self.create_subscription(msg_type, self.params.image_topic, self._on_frame, qos, raw=raw)
        self.get_logger().info(
            f"inspecting {self.params.image_topic} ({self.params.input}) for product {self._product!r} "
            f"with engine {self.params.engine!r}"
        )

    # ---- set-up ---------------------------------------------------------------------------------
    def _declare_parameters(self) -> dict[str, Any]:
        values = {}
        for name, default in InspectorParams.defaults().items():
            desc = ParameterDescriptor(description=DESCRIPTIONS[name], read_only=name != "product_id",
                                       dynamic_typing=True)  # YAML types "1234" as an int: coerced below
            values[name] = self.declare_parameter(name, default, desc).value
        return values

    def _make_inspector(self) -> Inspector:
        if self.params.cv_threads > 0:
            # An 800x800 frame gains nothing from more OpenCV threads (golden: 5.3 ms on 1 or 2), and
            # threads busy on every core delay the DDS and executor threads that carry the frames.
            import cv2

            cv2.setNumThreads(self.params.cv_threads)
        self.engine = create_engine(self.params.engine, **self.params.options)
        align = None if self.params.align == "none" else AlignConfig(motion=self.params.align)
        inspector = Inspector(self.engine, store=self.store, align=align)
        # load, check and prepare the reference now, not on the first frame (which the camera's next
        # frames would queue behind and be dropped)
        warm = inspector.warm_up(self._product)
        self._reference_version = str(warm.reference_version)
        self.get_logger().info(
            f"reference {self._product}@{warm.reference_version} ready; its own image inspected in "
            f"{warm.timings_ms.get('total', float('nan')):.1f} ms: "
            f"{'a defect (check the reference and thresholds)' if warm.anomaly else 'no defect'}"
        )
        return inspector

    def _require_product(self, product_id: str) -> str:
        """``product_id`` if the store has an active (promoted) reference for it, else ReferenceError."""
        problem = check_product_id(product_id)
        if problem:
            raise ReferenceError(problem)
        known = self.store.products()
        if product_id not in known:
            raise ReferenceError(
                f"product {product_id!r} is not in the reference store {self.params.store}; "
                f"known products: {', '.join(known) or '(none)'}; register it first"
            )
        if self.store.active_version(product_id) is None:
            raise ReferenceError(f"product {product_id!r} has no promoted reference version; promote one first")
        return product_id

    # ---- executor callbacks (short) -------------------------------------------------------------
    def _on_frame(self, msg: Any) -> None:
        self.stats.frame_in()
        if self._slot.put((msg, time.perf_counter())):
            self.stats.frame_dropped()
        # Hand the GIL to the worker just woken: otherwise it waits for the executor's own Python
        # bookkeeping (rebuilding its wait set) to block, about 0.2-0.3 ms per frame.
        time.sleep(0)

    def _on_product_topic(self, msg: String) -> None:
        result = self.set_parameters([Parameter("product_id", value=msg.data)])[0]
        if not result.successful:
            self.get_logger().warning(f"product switch to {msg.data!r} refused: {result.reason}")

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            if p.name != "product_id":
                continue
            product = str(p.value)
            try:
                self.store.load(self._require_product(product))
            except DifferadError as e:
                return SetParametersResult(successful=False, reason=str(e))
            if product != self._product:
                self.get_logger().info(f"product switched: {self._product!r} -> {product!r}")
            self._product = product
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        s = self.stats.snapshot()
        status = DiagnosticStatus(name="differad_edge: inspector", hardware_id=self.get_fully_qualified_name())
        problems = s.bad_frames + s.engine_errors
        status.level = DiagnosticStatus.WARN if problems or s.dropped else DiagnosticStatus.OK
        status.message = "ok" if status.level == DiagnosticStatus.OK else (s.last_error or "dropping frames")
        values = {
            "input_rate_hz": f"{s.input_rate_hz:.2f}",
            "processed_rate_hz": f"{s.processed_rate_hz:.2f}",
            "frames_in": s.frames_in,
            "frames_processed": s.processed,
            "frames_dropped": s.dropped,
            "bad_frames": s.bad_frames,
            "engine_errors": s.engine_errors,
            "anomalies": s.anomalies,
            "not_inspected": s.invalid,
            "latency_p50_ms": f"{s.latency_p50_ms:.2f}",
            "latency_p95_ms": f"{s.latency_p95_ms:.2f}",
            "inspect_p50_ms": f"{s.inspect_p50_ms:.2f}",
            "engine": self.params.engine,
            "product_id": self._product,
            "reference_version": self._reference_version,
            "last_error": s.last_error,
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(msg)

    # ---- worker thread --------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._slot.closed:
            item = self._slot.take(timeout=0.2)
            if item is not None:
                self._process(*item)

    def _process(self, msg: Any, received: float) -> None:
        product = self._product
        if isinstance(msg, bytes):  # raw input: the serialized sensor_msgs/Image
            try:
                msg = image_from_cdr(msg)
            except ImageError as e:
                self._report(self.stats.bad_frame, f"bad frame: {e}")
                return
        try:
            frame = compressed_to_rgb(msg) if self.params.input == "compressed" else image_to_rgb(msg)
            started = time.perf_counter()
            result = self.inspector.inspect(frame, product)
            inspect_ms = (time.perf_counter() - started) * 1000.0
        except (ImageError, AlignmentError) as e:  # unsupported encoding, truncated data, size mismatch
            self._report(self.stats.bad_frame, f"bad frame (stamp {_stamp(msg)}): {e}")
            return
        except Exception as e:  # an engine failure must not kill the node: count and report it
            self._report(self.stats.engine_error, f"engine failed on frame (stamp {_stamp(msg)}): {type(e).__name__}: {e}")
            return
        det = result.detection
        self._reference_version = str(result.reference_version)
        box = det.box if det.anomaly else None
        self._detections.publish(detections_message(msg.header, box, det.score))
        self.stats.done((time.perf_counter() - received) * 1000.0, box is not None, det.valid, inspect_ms)
        if not det.valid:
            self.get_logger().warning(f"frame not inspected ({det.not_inspected}): {det.message}", throttle_duration_sec=1.0)
        if self._annotated is not None:
            from differad_edge.viz import draw_boxes

            img = draw_boxes(frame, box, label="defect", score=det.score if box is not None else None)
            self._annotated.publish(array_to_image(img, header=msg.header))

    def _report(self, count, reason: str) -> None:
        count(reason)
        self.get_logger().warning(reason, throttle_duration_sec=1.0)

    def close(self) -> None:
        """Stop the worker (finishing the frame in hand) and release the engine."""
        self._slot.close()
        self._worker.join(timeout=30.0)
        self.inspector.close()
        self.engine.close()


def _stamp(msg: Any) -> str:
    return f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"


def main(args: list[str] | None = None) -> int:
    """Console script ``differad-inspector`` / ``ros2 run differad_edge inspector``."""
    try:
        rclpy.init(args=args)  # also installs the SIGINT/SIGTERM handlers that end spin() cleanly
    except RCLError as e:  # malformed --ros-args (e.g. "-p model:=" without a value)
        print(f"inspector: invalid ROS arguments: {e}", file=sys.stderr)
        return 2
    try:
        node = InspectorNode()
    except (DifferadError, ImportError, ParameterException) as e:
        print(f"inspector: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = make_executor(node.params.executor, node)
    try:
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
