"""Lifecycle node ``inspector``: camera frames in, a verdict per frame out, health on ``/diagnostics``.

A thin adapter over :class:`differad_edge.inspector.Inspector`:

- ``~/result`` (``differad_edge_msgs/InspectionResult``): OK / NG / NOT_INSPECTED + reason, every
  defect, reference version, timings, for every inspected frame;
- ``~/detections`` (``vision_msgs/Detection2DArray``), fail-safe: every defect, empty for a good
  part, and one detection of class ``not_inspected`` over the frame when it was not judged;
- ``~/annotated`` (optional): the frame with the defects, the care mask and a verdict banner;
- service ``~/inspect`` (``differad_edge_msgs/Inspect``): the first frame stamped after the request,
  against the named product / view, or NOT_INSPECTED(timeout).

Lifecycle: configure loads the store, engine and reference; activate starts the subscription,
publishers and service; deactivate / cleanup / shutdown release them. The subscription callback
only stamps the frame and drops it into a keep-latest slot; one worker thread decodes, inspects and
publishes, so a slow engine never blocks the executor (parameter, service and timer callbacks).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from differad_edge_msgs.msg import InspectionResult
from differad_edge_msgs.srv import Inspect
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from vision_msgs.msg import Detection2DArray

from differad_edge.alignment import AlignConfig
from differad_edge.engines import create_engine
from differad_edge.errors import ConfigError, DifferadError, ImageError
from differad_edge.inspector import Inspection, Inspector
from differad_edge.outcome import Detection, Reason
from differad_edge.store import ReferenceStore
from differad_edge.views import reference_id

from .conversions import (
    array_to_image,
    cdr_stamp,
    compressed_to_rgb,
    image_from_cdr,
    image_to_rgb,
    result_message,
    verdict_detections,
)
from .engine_params import EngineParam, engine_params, explicit_options
from .params import (
    ALIGN_MODES,
    ID_FIELDS,
    InspectorParams,
    check_product_id,
    check_view_id,
    command_line_literals,
    id_from_value,
)
from .rosenv import fastdds_profile
from .slot import LatestSlot
from .spin import make_executor, spin_until_shutdown
from .stats import NodeStats

RCLError = _rclpy.RCLError

DESCRIPTIONS = {
    "store": "reference store folder (differad_edge.store.ReferenceStore)",
    "product_id": "product whose active reference each frame is compared with; switchable at run time",
    "view_id": "view (robot pose) of the product for streamed frames; empty: the product's single view",
    "engine": "detector: golden (default), vlm or onnx",
    "model": "model folder (vlm) or export bundle (onnx)",
    "engine_options": "JSON object of extra engine options (fallback; prefer the nested <engine>.<option> parameters)",
    "input": "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage, topic <camera>/compressed)",
    "image_topic": "camera topic",
    "qos": "sensor_data (best effort, keep last 5) or reliable",
    "align": f"alignment of each frame onto the reference: {', '.join(ALIGN_MODES)}",
    "publish_annotated": "also publish ~/annotated (rgb8: defects, care mask, verdict banner)",
    "diagnostics_period": "seconds between /diagnostics messages",
    "latency_window": "number of recent frames the latency percentiles cover",
    "cv_threads": "OpenCV threads of this process (golden engine, alignment); 0: OpenCV's default (all cores)",
    "executor": "events (rclpy's C++ events executor; single-threaded where rclpy lacks it) or single_threaded",
    "stream": "inspect every frame (true) or only frames requested through ~/inspect (false)",
    "trigger_timeout": "seconds ~/inspect waits for a frame when the request gives no timeout",
    "diagnostics_window": "seconds of history the diagnostics level and rates look at",
    "frame_timeout": "ERROR when no frame arrived for this many seconds while active (0: off, e.g. a triggered camera)",
    "expected_rate": "camera frame rate in Hz: gaps in the header stamps count as lost frames (0: off)",
    "engine_error_limit": "ERROR after this many engine failures in a row",
    "queue_depth": "frames waiting for the worker; when full the oldest is dropped (1: keep only the latest)",
    "autostart": "configure and activate at start (false: wait for a lifecycle manager)",
}
#: Parameters that may change while the node runs (the rest are read at configure).
DYNAMIC = ("product_id", "view_id", "stream", "trigger_timeout")


def camera_topic(p: InspectorParams) -> str:
    """The topic frames arrive on: ``image_topic``, or image_transport's ``<image_topic>/compressed``."""
    if p.input == "compressed" and not p.image_topic.rstrip("/").endswith("/compressed"):
        return f"{p.image_topic.rstrip('/')}/compressed"
    return p.image_topic


@dataclass
class Trigger:
    """One pending ``~/inspect`` request: answered by the first frame stamped after ``after_ns``."""

    product_id: str
    view_id: str
    part_id: str
    after_ns: int
    deadline: float  # time.monotonic()
    future: Future
    response: Any

    @property
    def ref(self) -> str:
        return reference_id(self.product_id, self.view_id)


@dataclass
class _Frame:
    msg: Any
    received: float  # time.perf_counter()
    stamp_ns: int | None
    triggers: list[Trigger] = field(default_factory=list)


class InspectorNode(LifecycleNode):
    """Pairs each camera frame with the active reference of ``product_id`` / ``view_id`` and publishes
    the verdict."""

    def __init__(self, argv: list[str] | None = None, **node_kwargs: Any) -> None:
        super().__init__("inspector", **node_kwargs)
        self._literals = command_line_literals(list(sys.argv if argv is None else argv))
        self._declare_parameters()
        self.params: InspectorParams | None = None
        self.store: ReferenceStore | None = None
        self.engine: Any = None
        self.inspector: Inspector | None = None
        self._product = self._view = ""
        self._stream = True
        self._trigger_timeout = 5.0
        self._versions: dict[str, str] = {}
        self._care_masks: dict[tuple[str, str], Any] = {}
        self._pending_options: dict[str, Any] | None = None
        self._engine_options: dict[str, Any] = {}
        self._triggers: list[Trigger] = []
        self._parts: dict[tuple[str, str], dict[str, Any]] = {}  # (product, part_id) -> view -> result
        self._lock = threading.Lock()
        self._closed = False
        self._configure_error = ""
        self.log_configure_errors = True  # main() prints the one error line itself
        self.stats = NodeStats()
        self._inputs: list[Any] = []
        self._slot: LatestSlot[_Frame] | None = None
        self._worker: threading.Thread | None = None
        self._active = False
        self._outputs: dict[str, Any] = {}
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        period = self.get_parameter("diagnostics_period").value
        self._diag_timer = self.create_timer(
            float(period) if isinstance(period, (int, float)) and period > 0 else 1.0, self._publish_diagnostics
        )

    # ---- parameters ------------------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        for name, default in InspectorParams.defaults().items():
            desc = ParameterDescriptor(
                description=DESCRIPTIONS[name], read_only=name not in DYNAMIC, dynamic_typing=True
            )  # YAML types "2" as an int: coerced later
            self.declare_parameter(name, default, desc)
        engine = self.get_parameter("engine").value
        self.engine_params: list[EngineParam] = engine_params(engine) if isinstance(engine, str) else []
        for p in self.engine_params:
            desc = ParameterDescriptor(description=p.description, read_only=not p.dynamic)
            if p.choices:
                desc.additional_constraints = f"one of: {', '.join(p.choices)}"
            if p.range is not None and isinstance(p.default, float):
                desc.floating_point_range = [
                    FloatingPointRange(from_value=float(p.range[0]), to_value=float(p.range[1]))
                ]
            elif p.range is not None and isinstance(p.default, int) and not isinstance(p.default, bool):
                desc.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
            self.declare_parameter(p.name, p.default, desc)

    def _overridden(self) -> set[str]:
        return set(getattr(self, "_parameter_overrides", {}) or {})

    def _unknown_engine_parameters(self) -> list[str]:
        """Overrides named like an engine option that the engine does not have (a typo, e.g. golden.kk)."""
        engine = self.get_parameter("engine").value
        known = {p.name for p in self.engine_params}
        return sorted(n for n in self._overridden() if n.startswith(f"{engine}.") and n not in known)

    def _nested_options(self) -> dict[str, Any]:
        values = {p.name: self.get_parameter(p.name).value for p in self.engine_params}
        return explicit_options(self.engine_params, values, self._overridden())

    # ---- lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._configure_error = ""
        try:
            self._configure()
        except Exception as e:
            msg = str(e) if isinstance(e, (DifferadError, ImportError)) else f"{type(e).__name__}: {e}"
            self._configure_error = msg
            if self.log_configure_errors:
                self.get_logger().error(f"configure failed: {msg}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        names = InspectorParams.defaults()
        params = InspectorParams.from_values({n: self.get_parameter(n).value for n in names}, self._literals)
        unknown = self._unknown_engine_parameters()
        if unknown:
            raise ConfigError(
                f"unknown engine parameter(s) {', '.join(unknown)}; known: "
                f"{', '.join(p.name for p in self.engine_params) or '(none)'}"
            )
        self.params = params
        self.store = ReferenceStore(params.store)
        ref = reference_id(params.product_id, params.view_id)
        self._require_reference(ref)
        if params.cv_threads > 0:
            # An 800x800 frame gains nothing from more OpenCV threads (golden: 5.3 ms on 1 or 2), and
            # threads busy on every core delay the DDS and executor threads that carry the frames.
            import cv2

            cv2.setNumThreads(params.cv_threads)
        self._engine_options = {**params.options, **self._nested_options()}
        self.inspector = self._make_inspector(self._engine_options)
        self._product, self._view = params.product_id, params.view_id
        self._stream, self._trigger_timeout = params.stream, params.trigger_timeout
        self.stats = NodeStats(
            params.latency_window,
            window=params.diagnostics_window,
            frame_timeout=params.frame_timeout,
            expected_rate=params.expected_rate,
            engine_error_limit=params.engine_error_limit,
        )
        # load, check and prepare the reference now, not on the first frame (which the camera's next
        # frames would queue behind and be dropped)
        warm = self.inspector.warm_up(ref)
        self._versions[ref] = str(warm.reference_version)
        # Lifecycle publishers exist from configure on (publishing once active), so subscribers have
        # discovered them by the time the camera subscription appears and the first frame arrives.
        self._outputs = {
            "detections": self.create_lifecycle_publisher(Detection2DArray, "~/detections", 10),
            "result": self.create_lifecycle_publisher(InspectionResult, "~/result", 10),
            "part_result": self.create_lifecycle_publisher(InspectionResult, "~/part_result", 10),
        }
        if params.publish_annotated:
            self._outputs["annotated"] = self.create_lifecycle_publisher(Image, "~/annotated", 2)
        self.get_logger().info(
            f"reference {ref}@{warm.reference_version} ready; its own image inspected in "
            f"{warm.timings_ms.get('total', float('nan')):.1f} ms: {warm.verdict.value}"
            f"{' (a defect on the reference itself: check the reference and thresholds)' if warm.anomaly else ''}"
        )

    def _make_inspector(self, options: dict[str, Any]) -> Inspector:
        assert self.params is not None
        engine = create_engine(self.params.engine, **options)
        align = None if self.params.motion is None else AlignConfig(motion=self.params.motion)
        old, self.engine = self.engine, engine
        if old is not None:
            old.close()
        return Inspector(engine, store=self.store, align=align)

    def _require_reference(self, ref: str) -> None:
        """``ref`` has an active (promoted) reference that loads, else an error naming the fix."""
        assert self.store is not None
        try:
            known = self.store.products()
            if ref not in known:
                raise ConfigError(
                    f"product {ref!r} is not in the reference store {self.store.root}; known products: "
                    f"{', '.join(known) or '(none)'}; register it first"
                )
            if self.store.active_version(ref) is None:
                raise ConfigError(f"product {ref!r} has no promoted reference version; promote one first")
            self.store.load(ref)
        except DifferadError:
            raise
        except Exception as e:
            raise ConfigError(
                f"the reference of {ref!r} in {self.store.root} cannot be read: {type(e).__name__}: {e}"
            ) from None

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.params is not None
        p = self.params
        done = super().on_activate(state)  # enables the lifecycle publishers before any frame can arrive
        if done != TransitionCallbackReturn.SUCCESS:
            return done
        self._slot = LatestSlot(p.queue_depth)
        self.stats.restart()
        self._worker = threading.Thread(target=self._work, name="inspector-worker", daemon=True)
        self._worker.start()
        self._inputs = [
            self.create_subscription(String, "~/product_id", self._on_product_topic, 10),
            self.create_service(Inspect, "~/inspect", self._on_inspect),
        ]
        # Subscribe last: a publisher that sees this subscription knows the node is ready.
        qos = qos_profile_sensor_data if p.qos == "sensor_data" else QoSProfile(depth=5)
        # Raw frames arrive as their CDR bytes (raw=True) and are read in the worker by image_from_cdr:
        # the pixels stay a zero-copy view, rclpy's deserialization (two copies of 1.9 MB) is skipped.
        raw = p.input == "raw"
        self._inputs.append(
            self.create_subscription(Image if raw else CompressedImage, camera_topic(p), self._on_frame, qos, raw=raw)
        )
        self._active = True
        self.get_logger().info(
            f"inspecting {self.resolve_topic_name(camera_topic(p))} ({p.input}) for "
            f"{reference_id(self._product, self._view)!r} with engine {p.engine!r}"
            f"{'' if self._stream else ' (triggered only: ~/inspect)'}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_streaming(self) -> None:
        """Stop the worker (finishing the frame in hand), answer pending requests, drop the entities."""
        self._active = False
        if self._slot is not None:
            self._slot.close()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30.0)
        self._worker = None
        with self._lock:
            pending, self._triggers = self._triggers, []
        for t in pending:
            self._answer(t, Detection.refuse(Reason.TIMEOUT, "the inspector was deactivated before a frame arrived"))
        for entity in self._inputs:
            if hasattr(entity, "srv_name"):
                self.destroy_service(entity)
            else:
                self.destroy_subscription(entity)
        self._inputs = []

    def _release(self) -> None:
        for pub in self._outputs.values():
            self.destroy_lifecycle_publisher(pub) if hasattr(
                self, "destroy_lifecycle_publisher"
            ) else self.destroy_publisher(pub)
        self._outputs = {}
        if self.inspector is not None:
            self.inspector.close()
        if self.engine is not None:
            self.engine.close()
        self.inspector = self.engine = None

    def close(self) -> None:
        """Stop streaming and release the engine, once (later calls do nothing)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop_streaming()
        self._release()

    # ---- executor callbacks (short) ------------------------------------------------------------
    def _on_frame(self, msg: Any) -> None:
        stamp_ns = None
        try:
            sec, nsec = cdr_stamp(msg) if isinstance(msg, bytes) else (msg.header.stamp.sec, msg.header.stamp.nanosec)
            stamp_ns = int(sec) * 1_000_000_000 + int(nsec)
        except (ValueError, AttributeError, TypeError):  # unreadable header: the worker reports the frame
            pass
        self.stats.frame_in(stamp_ns)
        slot = self._slot
        if slot is not None and slot.put(_Frame(msg, time.perf_counter(), stamp_ns)):
            self.stats.frame_dropped()
        # Hand the GIL to the worker just woken: otherwise it waits for the executor's own Python
        # bookkeeping (rebuilding its wait set) to block, about 0.2-0.3 ms per frame.
        time.sleep(0)

    def _on_product_topic(self, msg: String) -> None:
        result = self.set_parameters([Parameter("product_id", value=msg.data)])[0]
        if not result.successful:
            self.get_logger().warning(f"product switch to {msg.data!r} refused: {result.reason}")

    async def _on_inspect(self, request: Inspect.Request, response: Inspect.Response) -> Inspect.Response:
        """Answer with the first frame stamped after this request (awaited; the worker completes it)."""
        product = request.product_id or self._product
        problem = check_product_id(product) or check_view_id(request.view_id)
        future: Future = Future()
        header = Header(stamp=self.get_clock().now().to_msg())
        if problem:
            response.result = result_message(
                header,
                Detection.refuse(Reason.NO_REFERENCE, problem),
                product_id=product,
                view_id=request.view_id,
                part_id=request.part_id,
            )
            return response
        timeout = request.timeout if request.timeout > 0 else self._trigger_timeout
        trigger = Trigger(
            product,
            request.view_id,
            request.part_id,
            self.get_clock().now().nanoseconds,
            time.monotonic() + timeout,
            future,
            response,
        )
        with self._lock:
            if not self._active:
                trigger = None
            else:
                self._triggers.append(trigger)
        if trigger is None:
            response.result = result_message(
                header,
                Detection.refuse(Reason.TIMEOUT, "the inspector is not active"),
                product_id=product,
                view_id=request.view_id,
                part_id=request.part_id,
            )
            return response
        return await future

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        updates: dict[str, Any] = {}
        nested = {p.name: p for p in self.engine_params}
        options_changed = False
        for p in params:
            if p.name in ID_FIELDS:
                try:
                    updates[p.name] = id_from_value(p.name, p.value)
                except ConfigError as e:
                    return SetParametersResult(successful=False, reason=str(e))
            elif p.name == "stream" and not isinstance(p.value, bool):
                return SetParametersResult(successful=False, reason=f"stream={p.value!r}: expected true or false")
            elif p.name == "trigger_timeout" and (
                isinstance(p.value, bool) or not isinstance(p.value, (int, float)) or p.value <= 0
            ):
                return SetParametersResult(
                    successful=False, reason=f"trigger_timeout={p.value!r}: expected seconds > 0"
                )
            elif p.name in nested:
                ep = nested[p.name]
                if ep.choices and p.value not in ep.choices:
                    return SetParametersResult(
                        successful=False, reason=f"{p.name}={p.value!r}: expected one of {', '.join(ep.choices)}"
                    )
                options_changed = True
        if self.params is None:  # not configured: values are read at configure
            return SetParametersResult(successful=True)
        product = updates.get("product_id", self._product)
        view = updates.get("view_id", self._view)
        if "product_id" in updates or "view_id" in updates:
            problem = check_product_id(product) or check_view_id(view)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
            try:
                ref = reference_id(product, view)
                self._require_reference(ref)
            except DifferadError as e:
                return SetParametersResult(successful=False, reason=str(e))
        options = None
        if options_changed:
            values = {p.name: self.get_parameter(p.name).value for p in self.engine_params}
            values.update({p.name: p.value for p in params if p.name in nested})
            explicit = explicit_options(self.engine_params, values, self._overridden() | {p.name for p in params})
            options = {**self.params.options, **explicit}
            try:  # the golden engine builds in microseconds: a bad value is refused here, not in the worker
                create_engine(self.params.engine, **options).close()
            except (DifferadError, TypeError, ValueError) as e:
                return SetParametersResult(successful=False, reason=str(e))
        for p in params:
            if p.name == "stream":
                self._stream = bool(p.value)
            elif p.name == "trigger_timeout" and isinstance(p.value, (int, float)) and p.value > 0:
                self._trigger_timeout = float(p.value)
        if (product, view) != (self._product, self._view):
            self.get_logger().info(
                f"product switched: {reference_id(self._product, self._view)!r} -> {reference_id(product, view)!r}"
            )
        self._product, self._view = product, view
        if options is not None:
            self._pending_options = options
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        s = self.stats.snapshot()
        status = DiagnosticStatus(name="differad_edge: inspector", hardware_id=self.get_fully_qualified_name())
        if self._active:
            status.level, status.message = bytes([s.level]), s.message
        elif self._configure_error:
            status.level, status.message = DiagnosticStatus.ERROR, f"configure failed: {self._configure_error}"
        else:
            status.level, status.message = DiagnosticStatus.WARN, "inactive: not inspecting (lifecycle state)"
        w = s.window
        values = {
            "active": str(self._active).lower(),
            "window_s": f"{s.window_s:g}",
            "input_rate_hz": f"{s.input_rate_hz:.2f}",
            "processed_rate_hz": f"{s.processed_rate_hz:.2f}",
            "window_frames_in": w["in"],
            "window_not_inspected": w["not_inspected"],
            "window_bad_frames": w["bad"],
            "window_dropped": w["dropped"],
            "window_lost": w["lost"],
            "frames_in": s.frames_in,
            "frames_processed": s.processed,
            "frames_dropped": s.dropped,
            "frames_lost": s.lost,
            "bad_frames": s.bad_frames,
            "engine_errors": s.engine_errors,
            "anomalies": s.anomalies,
            "not_inspected": s.invalid,
            "latency_p50_ms": f"{s.latency_p50_ms:.2f}",
            "latency_p95_ms": f"{s.latency_p95_ms:.2f}",
            "inspect_p50_ms": f"{s.inspect_p50_ms:.2f}",
            "engine": self.params.engine if self.params else "",
            "product_id": self._product,
            "view_id": self._view,
            "reference_version": self._versions.get(reference_id(self._product, self._view), "")
            if self._product
            else "",
            "last_error": s.last_error,
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(msg)

    # ---- worker thread ---------------------------------------------------------------------------
    def _work(self) -> None:
        slot = self._slot
        assert slot is not None
        while not slot.closed:
            item = slot.take(timeout=0.1)
            self._expire_triggers()
            if item is None:
                continue
            try:
                self._process(item)
            except Exception as e:
                self._report_bad(item, f"frame could not be processed: {type(e).__name__}: {e}")

    def _expire_triggers(self) -> None:
        now = time.monotonic()
        with self._lock:
            expired = [t for t in self._triggers if t.deadline <= now]
            self._triggers = [t for t in self._triggers if t.deadline > now]
        for t in expired:
            det = Detection.refuse(
                Reason.TIMEOUT,
                "no frame stamped after the request arrived in time",
                engine=self.params.engine if self.params else "",
            )
            self._publish_result(
                Header(stamp=self.get_clock().now().to_msg()),
                det,
                t.product_id,
                t.view_id,
                t.part_id,
                "",
                None,
                {},
                0.0,
                triggers=[t],
            )
            self.stats.done(0.0, False, valid=False, reason=f"~/inspect timed out ({t.product_id}/{t.view_id or '-'})")

    def _due_triggers(self, stamp_ns: int | None) -> list[Trigger]:
        if stamp_ns is None:
            return []
        with self._lock:
            if not self._triggers:
                return []
            due = [t for t in self._triggers if stamp_ns > t.after_ns]
            self._triggers = [t for t in self._triggers if stamp_ns <= t.after_ns]
        return due

    def _process(self, item: _Frame) -> None:
        if self._pending_options is not None:  # nested engine parameters changed at run time
            options, self._pending_options = self._pending_options, None
            self.inspector = self._make_inspector(options)
            self._engine_options = options
            self.get_logger().info(f"engine options now {options}")
        item.triggers = self._due_triggers(item.stamp_ns)
        if not self._stream and not item.triggers:
            return
        msg = item.msg
        try:
            if isinstance(msg, bytes):  # raw input: the serialized sensor_msgs/Image
                msg = image_from_cdr(msg)
                item.msg = msg
            frame = compressed_to_rgb(msg) if self.params.input == "compressed" else image_to_rgb(msg)
        except ImageError as e:
            self._report_bad(item, f"bad frame: {e}")
            return
        size = (int(frame.shape[1]), int(frame.shape[0]))
        groups: dict[str, list[Trigger]] = {}
        for t in item.triggers:
            groups.setdefault(t.ref, []).append(t)
        stream_ref = reference_id(self._product, self._view)
        jobs = [(ref, ts) for ref, ts in groups.items()]
        if self._stream and stream_ref not in groups:
            jobs.insert(0, (stream_ref, []))
        for ref, triggers in jobs:
            result = self._inspect(frame, ref)
            det = result.detection
            self._note_version(ref, result.reference_version)
            latency = (time.perf_counter() - item.received) * 1000.0
            first = triggers[0] if triggers else None
            product = first.product_id if first else self._product
            view = first.view_id if first else self._view
            self._publish_result(
                msg.header,
                det,
                product,
                view,
                first.part_id if first else "",
                result.reference_version,
                size,
                result.timings_ms,
                latency,
                triggers=triggers,
                frame=frame,
                ref=ref,
            )
            self.stats.done(
                latency,
                det.anomaly,
                det.valid,
                result.timings_ms.get("total"),
                engine_failed=det.not_inspected is Reason.ENGINE_ERROR,
                reason=f"{det.not_inspected.value}: {det.message}" if not det.valid else "",
            )
            if not det.valid:
                self.get_logger().warning(
                    f"frame not inspected ({det.not_inspected}): {det.message}", throttle_duration_sec=1.0
                )

    def _inspect(self, frame: Any, ref: str) -> Inspection:
        try:
            return self.inspector.inspect(frame, ref)
        except Exception as e:
            det = Detection.refuse(
                Reason.NO_REFERENCE if isinstance(e, DifferadError) else Reason.ENGINE_ERROR,
                f"inspection of {ref!r} failed: {type(e).__name__}: {e}",
                engine=self.params.engine,
            )
            return Inspection(det, ref, "")

    def _note_version(self, ref: str, version: str) -> None:
        if version and self._versions.get(ref) != version:
            before = self._versions.get(ref)
            self._versions[ref] = version
            self.get_logger().info(f"reference {ref}@{version} in use" + (f" (was {before})" if before else ""))

    def _report_bad(self, item: _Frame, reason: str) -> None:
        """A frame that cannot be read: counted, logged, and still answered (NOT_INSPECTED bad_frame)."""
        self.stats.bad_frame(reason)
        self.get_logger().warning(reason, throttle_duration_sec=1.0)
        header = Header()
        if item.stamp_ns is not None:
            header.stamp.sec, header.stamp.nanosec = divmod(item.stamp_ns, 1_000_000_000)
        elif hasattr(item.msg, "header"):
            header = item.msg.header
        det = Detection.refuse(Reason.BAD_FRAME, reason, engine=self.params.engine if self.params else "")
        triggers = item.triggers
        if not self._stream and not triggers:
            return
        first = triggers[0] if triggers else None
        try:
            self._publish_result(
                header,
                det,
                first.product_id if first else self._product,
                first.view_id if first else self._view,
                first.part_id if first else "",
                "",
                None,
                {},
                (time.perf_counter() - item.received) * 1000.0,
                triggers=triggers,
            )
        except Exception as e:
            self._publish_result(
                Header(stamp=header.stamp), det, self._product, self._view, "", "", None, {}, 0.0, triggers=triggers
            )
            self.get_logger().warning(f"header of a bad frame unusable: {e}", throttle_duration_sec=1.0)

    def _publish_result(
        self,
        header: Any,
        det: Detection,
        product: str,
        view: str,
        part: str,
        version: str,
        size: tuple[int, int] | None,
        timings: dict[str, float],
        latency: float,
        triggers: list[Trigger] = (),
        frame: Any = None,
        ref: str = "",
    ) -> None:
        detections = verdict_detections(header, det, size)
        pubs = self._outputs
        live = "detections" in pubs and self._active
        if live:  # first, before the results are built: a detections-only consumer waits for nothing else
            pubs["detections"].publish(detections)
        # one result per request: the same frame answers several requests of one view (other part ids)
        ids = [(product, view, part), *((t.product_id, t.view_id, t.part_id) for t in triggers[1:])]
        results = [
            result_message(
                header,
                det,
                product_id=p,
                view_id=v,
                part_id=q,
                reference_version=version,
                timings_ms=timings,
                latency_ms=latency,
                detections=detections,
            )
            for p, v, q in ids
        ]
        if live:
            for r in results:
                pubs["result"].publish(r)
            if frame is not None and "annotated" in pubs:
                pubs["annotated"].publish(array_to_image(self._annotate(frame, det, ref, version), header=header))
        for t, r in zip(triggers, results, strict=False):  # no trigger: a streamed frame
            t.response.result = r
            t.future.set_result(t.response)
            if t.part_id:
                self._part_view_done(t.product_id, t.part_id, t.view_id, t.response.result, header)

    def _views_of(self, product: str) -> list[str]:
        """The registered views of ``product``: "" for the plain product id, "v" for "product.v"."""
        try:
            ids = self.store.products() if self.store is not None else []
        except Exception:
            return []
        return [
            ("" if r == product else r[len(product) + 1 :])
            for r in ids
            if r == product or (r.startswith(f"{product}.") and "." not in r[len(product) + 1 :])
        ]

    def _part_view_done(self, product: str, part: str, view: str, result: Any, header: Any) -> None:
        """Collect a part's per-view results; once every registered view is in, publish the part's
        verdict on ``~/part_result``: NOT_INSPECTED if any view was, else NG if any view is NG, else OK."""
        views = self._parts.setdefault((product, part), {})
        views[view] = result
        while len(self._parts) > 256:  # parts whose remaining views never came
            self._parts.pop(next(iter(self._parts)))
        expected = self._views_of(product)
        if not expected or not set(expected) <= set(views):
            return
        del self._parts[(product, part)]
        got = [views[v] for v in expected]
        codes = [r.verdict for r in got]
        summary = InspectionResult(
            header=header, product_id=product, part_id=part, engine=self.params.engine if self.params else ""
        )
        summary.detections.header = header  # per-view boxes stay in the per-view results
        if InspectionResult.VERDICT_NOT_INSPECTED in codes:
            summary.verdict, summary.verdict_name = InspectionResult.VERDICT_NOT_INSPECTED, "NOT_INSPECTED"
            summary.reason = got[codes.index(InspectionResult.VERDICT_NOT_INSPECTED)].reason
        elif InspectionResult.VERDICT_NG in codes:
            summary.verdict, summary.verdict_name = InspectionResult.VERDICT_NG, "NG"
        else:
            summary.verdict, summary.verdict_name = InspectionResult.VERDICT_OK, "OK"
        summary.message = ", ".join(f"{v or '(main)'}={r.verdict_name}" for v, r in zip(expected, got, strict=True))
        summary.score = max(float(r.score) for r in got)
        if "part_result" in self._outputs and self._active:
            self._outputs["part_result"].publish(summary)

    def _answer(self, trigger: Trigger, det: Detection) -> None:
        trigger.response.result = result_message(
            Header(stamp=self.get_clock().now().to_msg()),
            det,
            product_id=trigger.product_id,
            view_id=trigger.view_id,
            part_id=trigger.part_id,
        )
        trigger.future.set_result(trigger.response)

    def _annotate(self, frame: Any, det: Detection, ref: str, version: str) -> Any:
        """The frame with every defect, the don't-care area dimmed and the verdict banner drawn over
        its top rows (same size as the frame, so boxes stay in frame pixels)."""
        import numpy as np

        from differad_edge.viz import draw_detection

        h = frame.shape[0]
        base = frame
        mask = self._care_mask(ref, version)
        if mask is not None and mask.shape[:2] == frame.shape[:2]:
            base = frame.copy()
            off = mask == 0
            base[off] = (base[off].astype(np.uint16) * 2 // 5).astype(np.uint8)
        drawn = draw_detection(base, det, heat=False)
        bar = drawn.shape[0] - h
        out = drawn[bar:].copy()
        out[:bar] = drawn[:bar]
        return out

    def _care_mask(self, ref: str, version: str) -> Any:
        key = (ref, version)
        if key not in self._care_masks:
            try:
                self._care_masks[key] = self.store.load(ref, version).care_mask if version else None
            except Exception:
                self._care_masks[key] = None
        return self._care_masks[key]


# ---- console script ------------------------------------------------------------------------------
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def select_fastdds_profile(env: dict[str, str] | os._Environ) -> str:
    """Put the packaged Fast DDS profile (large shared-memory segment) in ``env`` unless it names one;
    returns the log line saying which profile is in force. A named file that does not exist is a
    ConfigError (Fast DDS would only log an XML parser error and run without it)."""
    named = env.get(PROFILE_ENV)
    if named is None:
        env[PROFILE_ENV] = str(fastdds_profile())
        return f"Fast DDS profile: {env[PROFILE_ENV]} (packaged; set {PROFILE_ENV} to use another)"
    if named.strip() in ("", "none"):
        env.pop(PROFILE_ENV, None)
        return f"Fast DDS profile: none ({PROFILE_ENV}={named!r}: Fast DDS defaults)"
    if not os.path.isfile(named):
        raise ConfigError(
            f"{PROFILE_ENV}={named!r} does not exist; point it at a Fast DDS XML profile, "
            f"or set it to 'none' to run with Fast DDS defaults"
        )
    return f"Fast DDS profile: {named} (from {PROFILE_ENV})"


def usage() -> str:
    """``differad-inspector --help``: the parameters, their defaults and what they do."""
    lines = [
        "usage: differad-inspector [--help] --ros-args -p store:=DIR -p product_id:=ID [-p NAME:=VALUE ...]",
        "",
        "Lifecycle node 'inspector': a verdict (OK / NG / NOT_INSPECTED) per camera frame on ~/result,",
        "fail-safe vision_msgs on ~/detections, service ~/inspect, health on /diagnostics.",
        f"Loads the packaged Fast DDS profile unless {PROFILE_ENV} names one ('none': Fast DDS defaults).",
        "",
        "parameters:",
    ]
    for name, default in InspectorParams.defaults().items():
        lines.append(f"  {name:<20} {default!r:<20} {DESCRIPTIONS[name]}")
    lines += ["", "engine parameters (golden; vlm.* and onnx.* likewise for those engines):"]
    for p in engine_params("golden"):
        rng = f" [{p.range[0]:g}, {p.range[1]:g}]" if p.range else ""
        lines.append(f"  {p.name:<20} {p.default!r:<20} {p.description}{rng}")
    return "\n".join(lines)


def _error(msg: str) -> int:
    print(f"differad: error: inspector: {' '.join(msg.split())}", file=sys.stderr, flush=True)
    return 2


def main(args: list[str] | None = None) -> int:
    """Console script ``differad-inspector`` / ``ros2 run differad_edge inspector``."""
    argv = list(sys.argv if args is None else args)
    user = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in user or "--help" in user:
        print(usage())
        return 0
    try:
        profile_line = select_fastdds_profile(os.environ)
    except ConfigError as e:
        return _error(str(e))
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:  # every SIGINT/SIGTERM, however many: one clean stop
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except RCLError as e:  # malformed --ros-args (e.g. "-p model:=" without a value)
        return _error(f"invalid ROS arguments: {e}")
    node = executor = None
    try:
        node = InspectorNode(argv)
        node.get_logger().info(profile_line)
        node.log_configure_errors = False
        autostart = node.get_parameter("autostart").value
        if autostart is True:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                return _error(node._configure_error or "configure failed")
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                return _error("activate failed")
        node.log_configure_errors = True
        kind = node.params.executor if node.params else str(node.get_parameter("executor").value)
        executor = make_executor(kind if kind in ("events", "single_threaded") else "events", node)
        spin_until_shutdown(executor, stop=stop)
    except DifferadError as e:
        return _error(str(e))
    finally:
        for s in previous:  # a signal during the clean-up sets the event again, nothing more
            signal.signal(s, on_signal)
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
        if args is None:  # the console script: ignore what comes during interpreter exit, which would
            # otherwise restore the default handlers and die of a late SIGINT (exit -2)
            for s in previous:
                signal.signal(s, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
