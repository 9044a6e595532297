"""Image <-> numpy conversions and Detection2D boxes, on real sensor_msgs / vision_msgs messages."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from differad_edge_ros.conversions import (
    DEFECT_CLASS_ID,
    array_to_compressed,
    array_to_image,
    cdr_stamp,
    compressed_to_rgb,
    detection_box,
    detections_message,
    image_from_cdr,
    image_to_rgb,
    raw_to_array,
    restamp_cdr,
)
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from differad_edge.boxes import Box
from differad_edge.errors import ImageError

pytestmark = pytest.mark.ros


@pytest.fixture()
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_round_trip_exactly(rgb, encoding):
    msg = array_to_image(rgb, encoding)
    assert (msg.width, msg.height, msg.encoding) == (32, 24, encoding)
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_bgr8_bytes_are_in_bgr_order(rgb):
    msg = array_to_image(rgb, "bgr8")
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(24, 32, 3), rgb[..., ::-1])


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_encodings_give_the_gray_image_replicated(rgb, encoding):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = image_to_rgb(array_to_image(rgb, encoding))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


def test_mono16_big_endian_is_read_in_wire_order():
    values = np.arange(64 * 16, dtype=np.uint16).reshape(16, 64) * 60
    msg = Image(height=16, width=64, encoding="mono16", is_bigendian=1, step=128)
    msg.data = values.astype(">u2").tobytes()
    np.testing.assert_array_equal(raw_to_array(msg.data, 64, 16, "mono16", 128, True), values)
    np.testing.assert_array_equal(image_to_rgb(msg)[..., 0], (values.astype(np.uint32) // 257).astype(np.uint8))


def test_row_padding_in_step_is_skipped(rgb):
    padded = np.zeros((24, 32 * 3 + 8), np.uint8)
    padded[:, : 32 * 3] = rgb.reshape(24, -1)
    msg = Image(height=24, width=32, encoding="rgb8", step=32 * 3 + 8)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoding": "yuv422"}, "unsupported image encoding 'yuv422'"),
        ({"encoding": "32FC1"}, "unsupported image encoding"),
        ({"step": 95}, "step 95 is smaller"),
        ({"data": bytes(100)}, "truncated image data: 100 bytes"),
        ({"width": 0}, "has no pixels"),
    ],
)
def test_malformed_messages_raise_image_error(rgb, change, message):
    msg = array_to_image(rgb, "rgb8")
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(ImageError, match=message):
        image_to_rgb(msg)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_round_trip(rgb, fmt):
    big = cv2.resize(rgb, (128, 96), interpolation=cv2.INTER_NEAREST)
    out = compressed_to_rgb(array_to_compressed(big, fmt))
    if fmt == "png":
        np.testing.assert_array_equal(out, big)
    else:  # lossy, but the same picture
        assert out.shape == big.shape
        assert np.abs(out.astype(int) - big).mean() < 25


def test_corrupt_compressed_frame_raises_image_error(rgb):
    msg = array_to_compressed(rgb, "png")
    msg.data = msg.data[:20]
    with pytest.raises(ImageError, match="compressed frame"):
        compressed_to_rgb(msg)


def test_detections_message_uses_center_and_size_in_pixels():
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    box = Box(10, 20, 50, 30)  # exclusive right/bottom: 40 x 10 pixels
    msg = detections_message(header, box, 0.8)
    det = msg.detections[0]
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("cam", 12, 345)
    assert (det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.size_x, det.bbox.size_y) == (
        30,
        25,
        40,
        10,
    )
    assert det.results[0].hypothesis.class_id == DEFECT_CLASS_ID
    assert det.results[0].hypothesis.score == pytest.approx(0.8)
    assert detection_box(det) == box


@pytest.mark.parametrize("box", [None, Box(0, 0, 0, 0)])
def test_good_part_is_an_empty_array(box):
    assert list(detections_message(Header(), box).detections) == []


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "mono8", "mono16"])
@pytest.mark.parametrize("frame_id", ["", "c", "cam", "camera_optical_frame"])  # every string padding
def test_image_from_cdr_reads_what_rclpy_serializes(rgb, encoding, frame_id):
    msg = array_to_image(rgb, encoding, header=Header(frame_id=frame_id))
    msg.header.stamp.sec, msg.header.stamp.nanosec = -3, 999_999_999
    out = image_from_cdr(serialize_message(msg))
    assert out.header == msg.header
    assert (out.width, out.height, out.encoding, out.step, out.is_bigendian) == (32, 24, encoding, msg.step, 0)
    np.testing.assert_array_equal(image_to_rgb(out), image_to_rgb(msg))


def test_image_from_cdr_leaves_the_pixels_in_place(rgb):
    raw = serialize_message(array_to_image(rgb, "rgb8"))
    pixels = image_to_rgb(image_from_cdr(raw))
    assert np.shares_memory(pixels, np.frombuffer(raw, np.uint8))  # a view, no copy of the frame


def test_image_from_cdr_padded_step_and_malformed_bytes(rgb):
    padded = np.zeros((24, 32 * 3 + 5), np.uint8)
    padded[:, : 32 * 3] = rgb.reshape(24, -1)
    msg = Image(height=24, width=32, encoding="rgb8", step=32 * 3 + 5)
    msg.data = padded.tobytes()
    raw = serialize_message(msg)
    np.testing.assert_array_equal(image_to_rgb(image_from_cdr(raw)), rgb)
    with pytest.raises(ImageError, match="malformed image message"):
        image_from_cdr(raw[:20])
    with pytest.raises(ImageError, match="truncated image data"):  # header intact, pixels cut off
        image_to_rgb(image_from_cdr(raw[:200]))


@pytest.mark.parametrize("compressed", [False, True], ids=["Image", "CompressedImage"])
def test_restamp_cdr_changes_only_the_stamp(rgb, compressed):
    header = Header(frame_id="cam_left")
    msg = array_to_compressed(rgb, "png", header=header) if compressed else array_to_image(rgb, "bgr8", header=header)
    kind = CompressedImage if compressed else Image
    restamped = restamp_cdr(serialize_message(msg), 1_700_000_123, 987_654_321)
    assert cdr_stamp(restamped) == (1_700_000_123, 987_654_321)
    out = deserialize_message(restamped, kind)
    assert (out.header.stamp.sec, out.header.stamp.nanosec) == (1_700_000_123, 987_654_321)
    assert out.header.frame_id == "cam_left"
    decoded = compressed_to_rgb(out) if compressed else image_to_rgb(out)
    np.testing.assert_array_equal(decoded, rgb)


def test_restamp_cdr_refuses_bytes_it_cannot_read():
    with pytest.raises(ValueError, match="restamp"):
        restamp_cdr(b"\x09\x09garbage", 1, 2)
    with pytest.raises(ValueError, match="restamp"):
        restamp_cdr(b"\x00\x01\x00\x00", 1, 2)
    with pytest.raises(ValueError, match="read the stamp"):
        cdr_stamp(b"\x00\x01\x00\x00")


def test_every_reason_and_verdict_of_the_core_has_a_message_constant():
    from differad_edge_msgs.msg import InspectionResult
    from differad_edge_ros.conversions import VERDICT_CODES

    from differad_edge.outcome import Reason, Verdict

    for reason in Reason:
        assert getattr(InspectionResult, f"REASON_{reason.name}") == reason.value, reason
    for verdict in Verdict:
        assert getattr(InspectionResult, f"VERDICT_{verdict.name}") == VERDICT_CODES[verdict.value]
    assert InspectionResult.VERDICT_NOT_INSPECTED == 0  # the zero value is never OK
