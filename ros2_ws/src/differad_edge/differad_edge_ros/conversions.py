"""``sensor_msgs`` images <-> numpy without cv_bridge (not on PyPI), and engine answers -> vision_msgs.

Decoding is the core's :mod:`differad_edge.raw_image` (pure numpy on the message's fields, shared
with calibration); this module adds the raw CDR reader and message building, which imports the ROS
message packages lazily.
"""

from __future__ import annotations

import array
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from differad_edge.boxes import Box
from differad_edge.errors import ImageError
from differad_edge.images import decode_image, encode_image, to_rgb8
from differad_edge.metrics import is_positive
from differad_edge.raw_image import ENCODINGS, image_message_to_rgb, raw_to_array  # noqa: F401 - re-exported for camera_sim and tests
from differad_edge.raw_image import encoding_of as _encoding

#: Class id of every published defect (one class: "something differs from the reference").
DEFECT_CLASS_ID = "defect"
#: Class id of the one detection over the whole frame that a NOT_INSPECTED frame publishes on
#: ``~/detections``: a consumer that reads only detections then rejects the part instead of passing
#: it on an empty array (which means a good part).
NOT_INSPECTED_CLASS_ID = "not_inspected"


def image_to_rgb(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/Image`` as uint8 RGB ``H x W x 3``; :class:`ImageError` for anything malformed."""
    return image_message_to_rgb(msg)


@dataclass(frozen=True)
class RawImage:
    """The fields of a ``sensor_msgs/Image`` read straight from its CDR bytes; ``data`` is a view into them."""

    header: Any  # std_msgs/Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


#: CDR encapsulation ids whose layout of ``sensor_msgs/Image`` this decoder reads (XCDR1 and plain XCDR2,
#: big and little endian: the same layout for a type without 8-byte fields) -> struct byte order.
_CDR_ENCAPSULATIONS = {b"\x00\x00": ">", b"\x00\x01": "<", b"\x00\x06": ">", b"\x00\x07": "<"}


def image_from_cdr(raw: bytes | bytearray | memoryview) -> Any:
    """A ``sensor_msgs/Image`` from its serialized (CDR) bytes, as taken by a ``raw=True`` subscription.

    Reads the few header fields and leaves the pixels where they are (``data`` is a zero-copy
    memoryview), which skips rclpy's deserialization into a Python message (two copies of the
    frame). An encapsulation it does not know falls back to ``rclpy.serialization``. Malformed bytes
    raise :class:`ImageError`.
    """
    buf = memoryview(raw).cast("B")
    order = _CDR_ENCAPSULATIONS.get(bytes(buf[:2]))
    if order is None:
        if len(buf) < 4:
            raise ImageError(f"truncated image message: {len(buf)} bytes of CDR")
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image

        try:  # the middleware's own reader; whatever it raises on garbage is a bad frame, not a crash
            return deserialize_message(bytes(buf), Image)
        except Exception as e:
            raise ImageError(
                f"malformed image message: CDR encapsulation {bytes(buf[:2]).hex()} ({len(buf)} bytes) "
                f"cannot be read: {type(e).__name__}: {e}"
            ) from None
    u32 = struct.Struct(order + "I")
    body = buf[4:]  # CDR alignment is relative to the end of the 4-byte encapsulation header
    try:
        sec, nanosec = struct.unpack_from(order + "iI", body, 0)
        frame_id, pos = _cdr_string(body, 8, u32)
        pos = (pos + 3) & ~3
        height, width = struct.unpack_from(order + "II", body, pos)
        encoding, pos = _cdr_string(body, pos + 8, u32)
        is_bigendian = body[pos]
        pos = (pos + 1 + 3) & ~3
        step, size = struct.unpack_from(order + "II", body, pos)
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise ImageError(f"malformed image message ({len(buf)} bytes of CDR): {e}") from None
    pos += 8
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)
    # a short buffer is reported by raw_to_array as truncated data, like a short Python message
    return RawImage(header, height, width, encoding, is_bigendian, step, body[pos : pos + size])


def restamp_cdr(cdr: bytes, sec: int, nanosec: int) -> bytes:
    """The serialized message ``cdr`` with a new ``header.stamp``, for messages whose first field is a
    ``std_msgs/Header`` (images, detections).

    A publisher that re-sends prepared frames (the camera simulator, the benchmark) serializes each
    frame once and publishes these bytes: for an 800x800 frame that is one copy instead of rclpy's
    conversion to a C message and serialization (about 0.5 ms of the publish call).
    """
    order = _header_byte_order(cdr, "restamp")
    return b"".join((cdr[:4], struct.pack(order + "iI", sec, nanosec), memoryview(cdr)[12:]))


def cdr_stamp(cdr: bytes) -> tuple[int, int]:
    """``(sec, nanosec)`` of ``header.stamp`` in a serialized message that starts with a header: what
    a ``raw=True`` subscriber that only times messages needs, without deserializing them."""
    return struct.unpack_from(_header_byte_order(cdr, "read the stamp of") + "iI", cdr, 4)


def _header_byte_order(cdr: bytes, what: str) -> str:
    """Struct byte order of a CDR message long enough to hold a header stamp, else ValueError."""
    order = _CDR_ENCAPSULATIONS.get(bytes(cdr[:2]))
    if order is None or len(cdr) < 12:
        raise ValueError(
            f"not a CDR message this function can {what} (encapsulation {bytes(cdr[:2])!r}, {len(cdr)} bytes)"
        )
    return order


def _cdr_string(body: memoryview, pos: int, u32: struct.Struct) -> tuple[str, int]:
    """A CDR string at ``pos`` (4-aligned length incl. the NUL, then the bytes) and the offset after it."""
    pos = (pos + 3) & ~3
    (n,) = u32.unpack_from(body, pos)
    end = pos + 4 + n
    if n == 0 or end > len(body):
        raise IndexError(f"string of {n} bytes at offset {pos} runs past the message")
    return bytes(body[pos + 4 : end - 1]).decode("utf-8"), end


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg/png) as uint8 RGB."""
    try:
        return decode_image(bytes(msg.data))
    except ImageError as e:
        raise ImageError(f"compressed frame (format {msg.format!r}): {e}") from e


def array_to_image(rgb: np.ndarray, encoding: str = "rgb8", header: Any = None) -> Any:
    """A uint8 RGB array as ``sensor_msgs/Image`` in ``encoding`` (converted on the way)."""
    from sensor_msgs.msg import Image

    pixels = rgb_to_encoding(rgb, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(pixels.strides[0])
    data = array.array("B")  # array.array skips rclpy's per-element check of a list/bytes
    data.frombytes(memoryview(pixels).cast("B"))
    msg.data = data
    return msg


def rgb_to_encoding(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """Contiguous little-endian pixels of a uint8 RGB image in one of :data:`ENCODINGS`."""
    import cv2

    enc = _encoding(encoding)
    rgb = to_rgb8(rgb, "rgb")
    if enc.channels == 1:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        out = gray.astype(np.uint16) * 257 if enc.dtype == np.uint16 else gray
    else:
        code = {"rgb": None, "bgr": cv2.COLOR_RGB2BGR, "rgba": cv2.COLOR_RGB2RGBA, "bgra": cv2.COLOR_RGB2BGRA}[
            enc.order
        ]
        out = rgb if code is None else cv2.cvtColor(rgb, code)
    return np.ascontiguousarray(out.astype(enc.dtype.newbyteorder("<"), copy=False))


def array_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header: Any = None) -> Any:
    """A uint8 RGB array as ``sensor_msgs/CompressedImage`` (``jpeg`` or ``png``)."""
    from sensor_msgs.msg import CompressedImage

    if fmt not in ("jpeg", "png"):
        raise ImageError(f"unsupported compressed format {fmt!r}; expected 'jpeg' or 'png'")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = fmt
    data = array.array("B")
    data.frombytes(encode_image(to_rgb8(rgb, "rgb"), ".jpg" if fmt == "jpeg" else ".png"))
    msg.data = data
    return msg


def box_to_detection(box: Box, score: float, header: Any, detection_id: str = "") -> Any:
    """One ``vision_msgs/Detection2D``: center + size in frame pixels, class ``defect``."""
    from vision_msgs.msg import Detection2D, ObjectHypothesisWithPose

    det = Detection2D()
    det.header = header
    cx, cy = box.center
    det.bbox.center.position.x = float(cx)
    det.bbox.center.position.y = float(cy)
    det.bbox.size_x = float(box.width)
    det.bbox.size_y = float(box.height)
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = DEFECT_CLASS_ID
    hyp.hypothesis.score = float(score)
    det.results.append(hyp)
    det.id = detection_id
    return det


def detections_message(header: Any, box: Box | None, score: float = 0.0) -> Any:
    """``vision_msgs/Detection2DArray`` for one frame: one detection, or empty for a good part."""
    from vision_msgs.msg import Detection2DArray

    msg = Detection2DArray()
    msg.header = header
    if is_positive(box):
        msg.detections.append(box_to_detection(box, score, header))
    return msg


def verdict_detections(header: Any, detection: Any, frame_size: tuple[int, int] | None) -> Any:
    """The fail-safe ``Detection2DArray`` of one verdict: every defect (NG), empty (OK), or for
    NOT_INSPECTED one detection of class ``not_inspected`` over the whole frame (``frame_size`` =
    (width, height); 0 x 0 where the frame could not be read), its id the reason code."""
    from vision_msgs.msg import Detection2DArray

    msg = Detection2DArray()
    msg.header = header
    if detection.not_inspected is not None:
        w, h = frame_size or (0, 0)
        det = box_to_detection(Box(0.0, 0.0, float(w), float(h)), 1.0, header, str(detection.not_inspected.value))
        det.results[0].hypothesis.class_id = NOT_INSPECTED_CLASS_ID
        msg.detections.append(det)
        return msg
    for i, d in enumerate(detection.defects):
        msg.detections.append(box_to_detection(d.box, d.score, header, f"defect_{i}"))
    return msg


#: outcome.Verdict value -> InspectionResult.VERDICT_* constant (NOT_INSPECTED is 0, the zero value).
VERDICT_CODES = {"NOT_INSPECTED": 0, "OK": 1, "NG": 2}


def result_message(
    header: Any,
    detection: Any,
    *,
    product_id: str,
    view_id: str = "",
    part_id: str = "",
    reference_version: str = "",
    frame_size: tuple[int, int] | None = None,
    timings_ms: dict[str, float] | None = None,
    latency_ms: float = 0.0,
    detections: Any = None,
) -> Any:
    """``differad_edge_msgs/InspectionResult`` of one :class:`~differad_edge.outcome.Detection`."""
    from differad_edge_msgs.msg import InspectionResult

    msg = InspectionResult()
    msg.header = header
    msg.product_id, msg.view_id, msg.part_id = product_id, view_id, part_id
    msg.reference_version = reference_version or ""
    verdict = detection.verdict.value
    msg.verdict = VERDICT_CODES[verdict]
    msg.verdict_name = verdict
    msg.reason = "" if detection.not_inspected is None else str(detection.not_inspected.value)
    notes = "; ".join(detection.notes) if detection.notes else ""
    msg.message = "; ".join(t for t in (detection.message or "", notes) if t)
    msg.detections = detections if detections is not None else verdict_detections(header, detection, frame_size)
    msg.score = float(detection.score)
    msg.engine = detection.engine or ""
    timings = dict(timings_ms or {})
    msg.inspect_ms = float(timings.get("total", 0.0))
    msg.latency_ms = float(latency_ms)
    stages = [(k, float(v)) for k, v in timings.items()]
    msg.timing_stages = [k for k, _ in stages]
    msg.timing_ms = array.array("f", [v for _, v in stages])
    return msg


def detection_box(det: Any) -> Box:
    """The ``(x1, y1, x2, y2)`` pixel box of a ``vision_msgs/Detection2D`` (inverse of :func:`box_to_detection`)."""
    cx, cy = det.bbox.center.position.x, det.bbox.center.position.y
    hw, hh = det.bbox.size_x / 2.0, det.bbox.size_y / 2.0
    return Box(cx - hw, cy - hh, cx + hw, cy + hh)
