"""Raw camera buffers (the fields of a ``sensor_msgs/Image``) -> pixels, in pure numpy.

The one decoder for the ROS node (live frames) and calibration (bags, topics). It reads only the
message's fields, so the core needs no ROS import, and it ends in ``images.to_rgb8``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ImageError
from .images import to_rgb8


@dataclass(frozen=True)
class Encoding:
    dtype: np.dtype
    channels: int
    order: str  # channel order understood by images.to_rgb8


#: The encodings cameras publish (``sensor_msgs/image_encodings``), with their pixel layout.
ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding(np.dtype(np.uint8), 3, "rgb"),
    "bgr8": Encoding(np.dtype(np.uint8), 3, "bgr"),
    "rgba8": Encoding(np.dtype(np.uint8), 4, "rgba"),
    "bgra8": Encoding(np.dtype(np.uint8), 4, "bgra"),
    "mono8": Encoding(np.dtype(np.uint8), 1, "gray"),
    "mono16": Encoding(np.dtype(np.uint16), 1, "gray"),
}
#: OpenCV-style names some drivers use for the same layouts (8UC3 is OpenCV's BGR order).
ALIASES = {"8UC1": "mono8", "8UC3": "bgr8", "16UC1": "mono16"}


def encoding_of(name: str) -> Encoding:
    try:
        return ENCODINGS[ALIASES.get(name, name)]
    except KeyError:
        raise ImageError(
            f"unsupported image encoding {name!r}; expected one of {', '.join([*ENCODINGS, *ALIASES])} "
            "(convert on the camera driver, or publish a sensor_msgs/CompressedImage)"
        ) from None


def raw_to_array(
    data: Any, width: int, height: int, encoding: str, step: int, is_bigendian: bool = False
) -> np.ndarray:
    """The pixels of a raw image buffer as ``H x W [x C]`` in their native encoding (a view when possible)."""
    enc = encoding_of(encoding)
    if width <= 0 or height <= 0:
        raise ImageError(f"image of {width}x{height} has no pixels; expected positive width and height")
    row = width * enc.channels * enc.dtype.itemsize
    if step < row:
        raise ImageError(
            f"image step {step} is smaller than one {encoding} row of width {width} ({row} bytes); "
            "the message's width/step/encoding disagree: fix the publisher"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < step * height:
        raise ImageError(
            f"truncated image data: {buf.size} bytes for {width}x{height} {encoding} with step {step} "
            f"(expected {step * height}); the publisher sent a partial frame"
        )
    rows = buf[: step * height].reshape(height, step)[:, :row]
    if enc.dtype.itemsize > 1:  # wire byte order -> native uint16
        rows = np.ascontiguousarray(rows).view(enc.dtype.newbyteorder(">" if is_bigendian else "<"))
        pixels = rows.astype(enc.dtype, copy=False)
    else:
        pixels = rows
    return pixels.reshape(height, width, enc.channels) if enc.channels > 1 else pixels.reshape(height, width)


def image_message_to_rgb(msg: Any) -> np.ndarray:
    """Any object with the fields of ``sensor_msgs/Image`` (rclpy, rosbags, raw CDR view) -> uint8 RGB."""
    data = msg.data
    if not isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        data = np.asarray(data, dtype=np.uint8)  # e.g. rclpy's array.array or a list
    pixels = raw_to_array(
        data, int(msg.width), int(msg.height), str(msg.encoding), int(msg.step), bool(msg.is_bigendian)
    )
    return to_rgb8(pixels, encoding_of(str(msg.encoding)).order)  # type: ignore[arg-type]
