"""Capture from a folder, a video file (MJPG .avi written here) and ROS 2 bags (written with rosbags)."""

from __future__ import annotations

import json
from pathlib import Path

import calib_helpers as scenes
import cv2
import numpy as np
import pytest
from calib_helpers import PRODUCT
from differad_edge.calibration.session import capture, load_session
from differad_edge.calibration.sources import collect_frames, describe_source, ros_image_to_rgb

from differad_edge.errors import CalibrationError, ImageError, ReferenceError
from differad_edge.fileio import sha256_file


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_bag(
    path: Path, frames: list[np.ndarray], encoding: str, storage: str = "mcap", topic: str = "/camera/image_raw"
) -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    Image = ts.types["sensor_msgs/msg/Image"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        conn = w.add_connection(topic, Image.__msgtype__, typestore=ts)
        for i, rgb in enumerate(frames):
            if encoding == "bgr8":
                data = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            elif encoding == "mono8":
                data = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            else:
                data = rgb
            h, wd = data.shape[:2]
            ch = 1 if data.ndim == 2 else 3
            t = 1_700_000_000 * 10**9 + i * 100_000_000
            msg = Image(
                header=Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="camera"),
                height=h,
                width=wd,
                encoding=encoding,
                is_bigendian=0,
                step=wd * ch,
                data=np.ascontiguousarray(data).reshape(-1),
            )
            w.write(conn, t, ts.serialize_cdr(msg, Image.__msgtype__))
    return path


def test_capture_from_folder_writes_a_checked_session(capture_dir: Path, tmp_path: Path) -> None:
    session = capture(PRODUCT, str(capture_dir), 100, tmp_path / "s")
    assert len(session.frames) == 20
    loaded = load_session(tmp_path / "s")
    assert [f.name for f in loaded.frames] == sorted(p.name for p in capture_dir.iterdir())
    rejected = {f.name: list(f.verdict["reasons"]) for f in loaded.frames if not f.accepted}
    assert rejected["f100_blurred.png"] == ["focus"]
    assert rejected["f101_overexposed.png"] == ["exposure"]
    assert rejected["f102_shifted.png"] == ["stability"]
    assert "station" in rejected["f103_empty.png"]
    assert {f.split for f in loaded.frames} == {"build", "holdout"}
    assert len(loaded.select("holdout", accepted_only=False)) == 5  # every 4th of 20
    for f in loaded.frames:
        assert sha256_file(tmp_path / "s" / f.file) == f.sha256
    # frames are stored losslessly: the first one is byte-for-byte the source's pixels
    first = cv2.cvtColor(cv2.imread(str(tmp_path / "s" / loaded.frames[0].file)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(first, cv2.cvtColor(cv2.imread(str(capture_dir / "f000.png")), cv2.COLOR_BGR2RGB))
    with pytest.raises(CalibrationError, match="already holds a capture session"):
        capture(PRODUCT, str(capture_dir), 100, tmp_path / "s")


def test_capture_from_video_file(base_scene: np.ndarray, tmp_path: Path) -> None:
    frames = [scenes.good_frame(base_scene, i) for i in range(12)]
    video = write_video(tmp_path / "cam.avi", frames)
    assert describe_source(str(video)) == "video"
    got = collect_frames(str(video), 5, stride=2)
    assert [f.name for f in got] == [f"cam_{i:06d}" for i in (0, 2, 4, 6, 8)]
    # MJPG is lossy: the decoded frame is close to, not equal to, what was written
    assert np.abs(got[1].image.astype(int) - frames[2].astype(int)).mean() < 6.0
    session = capture(PRODUCT, str(video), 12, tmp_path / "s", holdout=0.25)
    assert len(session.frames) == 12
    assert all(f.accepted for f in session.frames)


@pytest.mark.parametrize("encoding, storage", [("rgb8", "mcap"), ("bgr8", "sqlite3"), ("mono8", "mcap")])
def test_capture_from_bag(base_scene: np.ndarray, tmp_path: Path, encoding: str, storage: str) -> None:
    frames = [scenes.good_frame(base_scene, i) for i in range(6)]
    bag = write_bag(tmp_path / "bag", frames, encoding, storage)
    assert describe_source(str(bag)) == "bag"
    got = collect_frames(str(bag), 10)
    assert len(got) == 6
    expected = (
        frames[3]
        if encoding != "mono8"
        else cv2.cvtColor(cv2.cvtColor(frames[3], cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    )
    assert np.array_equal(got[3].image, expected)  # raw images travel losslessly, channel order fixed
    session = capture(PRODUCT, str(bag), 6, tmp_path / "s", holdout=0.0)
    assert len(session.select("build")) == 6


def test_bag_topic_selection(base_scene: np.ndarray, tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "bag", [base_scene] * 2, "rgb8", topic="/cam_left/image")
    assert len(collect_frames(str(bag), 5, topic="/cam_left/image")) == 2
    with pytest.raises(CalibrationError, match="no image topic named '/other'"):
        collect_frames(str(bag), 5, topic="/other")


def test_ros_image_conversion_checks_the_message() -> None:
    class Msg:  # the fields of sensor_msgs/Image that the converter reads
        height, width, step, encoding, is_bigendian = 8, 9, 30, "rgb8", 0
        data = np.arange(8 * 30, dtype=np.uint16).astype(np.uint8)

    rgb = ros_image_to_rgb(Msg())
    assert rgb.shape == (8, 9, 3)
    assert rgb[1, 0].tolist() == [30, 31, 32]  # row padding (step 30 > 27) is skipped
    Msg.encoding = "yuv422"
    with pytest.raises(ImageError, match="unsupported image encoding 'yuv422'"):
        ros_image_to_rgb(Msg())


def test_empty_and_unreadable_sources(tmp_path: Path, base_scene: np.ndarray) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="holds no images"):
        collect_frames(str(tmp_path / "empty"), 3)
    with pytest.raises(CalibrationError, match="does not exist"):
        collect_frames(str(tmp_path / "missing"), 3)
    broken = tmp_path / "broken"
    broken.mkdir()
    cv2.imwrite(str(broken / "a.png"), base_scene)
    (broken / "b.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(CalibrationError, match=r"unreadable frame .*b\.png"):
        collect_frames(str(broken), 3)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CalibrationError, match="cannot tell what source"):
        collect_frames(str(tmp_path / "notes.txt"), 3)
    (tmp_path / "bad.avi").write_bytes(b"not a video")
    with pytest.raises(CalibrationError, match="cannot open video|yielded no frames"):
        collect_frames(str(tmp_path / "bad.avi"), 3)
    with pytest.raises(ReferenceError, match="invalid product id"):
        capture("../evil", str(broken), 1, tmp_path / "s")


def test_session_detects_tampered_frames(session, tmp_path: Path) -> None:
    frame = session.frames[0]
    path = session.root / frame.file
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(CalibrationError, match="changed since capture"):
        session.load_images([frame])
    (session.root / "session.json").write_text(json.dumps({"frames": "nope"}))
    with pytest.raises(CalibrationError, match="damaged"):
        load_session(session.root)


@pytest.mark.ros
def test_capture_from_live_topic(tmp_path: Path) -> None:
    """A fake camera publishes bgr8 frames in a second ROS context; capture reads ``ros:TOPIC``."""
    rclpy = pytest.importorskip("rclpy")
    import threading

    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    stop = threading.Event()

    def camera() -> None:
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        node = rclpy.create_node("fake_camera", context=ctx)
        pub = node.create_publisher(Image, "/calib_test/image_raw", qos_profile_sensor_data)
        i = 0
        while not stop.is_set():
            bgr = np.zeros((32, 40, 3), np.uint8)
            bgr[..., 0], bgr[..., 2] = i % 200, 200
            pub.publish(Image(height=32, width=40, encoding="bgr8", step=120, data=bgr.tobytes()))
            i += 1
            stop.wait(0.02)
        node.destroy_node()
        rclpy.shutdown(context=ctx)

    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    try:
        frames = collect_frames("ros:/calib_test/image_raw", 4, timeout_s=15.0)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert [f.name for f in frames] == [f"calib_test_image_raw_{i:06d}" for i in range(4)]
    assert all(f.image.shape == (32, 40, 3) and f.image[0, 0, 0] == 200 for f in frames)  # bgr8 -> RGB
    assert len({int(f.image[0, 0, 2]) for f in frames}) == 4  # four distinct frames, in order
