"""Where candidate frames come from: a folder of images, a video file, a ROS 2 bag or a live topic.

Each source yields ``Frame(name, image)`` with ``image`` uint8 RGB, so the gates never care where a
frame came from. Unreadable data raises ``CalibrationError`` naming the frame: a calibration built
from whatever happened to decode is worse than none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from differad_edge.errors import CalibrationError, DifferadError, ImageError, missing_extra
from differad_edge.images import IMAGE_EXTENSIONS, decode_image, load_image, to_rgb8
from differad_edge.raw_image import image_message_to_rgb

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg")
BAG_EXTENSIONS = (".mcap", ".db3")
IMAGE_MSGTYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")

#: ROS image encodings we decode, with their channel order as understood by ``images.to_rgb8``.


@dataclass
class Frame:
    """One candidate frame; ``name`` identifies it in reports (file name, video index, bag stamp)."""

    name: str
    image: np.ndarray


def describe_source(spec: str) -> str:
    """The kind of source a ``--source`` value names: ``folder``, ``video``, ``bag``, ``ros`` or ``camera``
    (``camera:N``: a USB camera through OpenCV)."""
    if spec.startswith("ros:"):
        return "ros"
    if spec.startswith("camera:"):
        if not spec[7:].isdigit():
            raise CalibrationError(f"camera source {spec!r} needs a device number, e.g. camera:0")
        return "camera"
    path = Path(spec)
    if not path.exists():
        raise CalibrationError(
            f"source {spec!r} does not exist; expected a folder of images, a video file, a ROS 2 bag or ros:TOPIC"
        )
    if path.is_dir():
        if (path / "metadata.yaml").is_file() or any(p.suffix in BAG_EXTENSIONS for p in path.iterdir()):
            return "bag"
        return "folder"
    if path.suffix.lower() in BAG_EXTENSIONS:
        return "bag"
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return "video"
    raise CalibrationError(
        f"cannot tell what source {spec!r} is (suffix {path.suffix!r}); pass a folder of images, a video "
        f"({', '.join(VIDEO_EXTENSIONS)}), a ROS 2 bag (folder or {', '.join(BAG_EXTENSIONS)}) or ros:TOPIC"
    )


def iter_frames(spec: str, *, stride: int = 1, topic: str | None = None, timeout_s: float = 30.0) -> Iterator[Frame]:
    """Frames of any source, keeping every ``stride``-th one."""
    if stride < 1:
        raise CalibrationError(f"stride must be >= 1, got {stride}")
    kind = describe_source(spec)
    if kind == "ros":
        frames: Iterator[Frame] = iter_topic(spec[4:], timeout_s=timeout_s)
    elif kind == "folder":
        frames = iter_folder(Path(spec))
    elif kind == "video":
        frames = iter_video(Path(spec))
    elif kind == "camera":
        frames = iter_camera(int(spec[7:]), timeout_s=timeout_s)
    else:
        frames = iter_bag(Path(spec), topic=topic)
    for i, frame in enumerate(frames):
        if i % stride == 0:
            yield frame


def collect_frames(
    spec: str,
    count: int | None,
    *,
    progress: bool = False,
    on_frame: Callable[[Frame], None] | None = None,
    **options: Any,
) -> list[Frame]:
    """The first ``count`` frames of a source (``None``: all of them); an empty source is an error.
    ``on_frame`` is called with each frame as it arrives (live progress)."""
    if count is not None and count < 1:
        raise CalibrationError(f"--frames must be >= 1, got {count}")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, desc="collecting frames", unit="frame")
    out: list[Frame] = []
    try:
        for frame in iter_frames(spec, **options):
            out.append(frame)
            if bar is not None:
                bar.update(1)
            if on_frame is not None:
                on_frame(frame)
            if count is not None and len(out) >= count:
                break
    finally:
        if bar is not None:
            bar.close()
    if not out:
        raise CalibrationError(f"source {spec!r} yielded no frames; check the path, topic or stride")
    return out


def iter_folder(folder: Path) -> Iterator[Frame]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise CalibrationError(f"folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    for path in files:
        try:
            image = load_image(path)
        except ImageError as e:
            raise CalibrationError(f"unreadable frame {path}: {e}; remove or replace the file") from e
        yield Frame(path.name, image)


def iter_video(path: Path) -> Iterator[Frame]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise CalibrationError(
                f"cannot open video {path}; is it a video file OpenCV can decode (e.g. MJPG .avi, mp4)?"
            )
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            try:
                image = to_rgb8(bgr, "bgr")
            except ImageError as e:
                raise CalibrationError(f"unreadable frame {index} of video {path}: {e}") from e
            yield Frame(f"{path.stem}_{index:06d}", image)
            index += 1
    finally:
        cap.release()


def iter_camera(index: int, timeout_s: float = 30.0) -> Iterator[Frame]:
    """Frames of a USB camera (OpenCV ``VideoCapture``); ends after ``timeout_s`` without a frame."""
    import cv2

    cap = cv2.VideoCapture(index)
    try:
        if not cap.isOpened():
            raise CalibrationError(
                f"cannot open camera {index}; check it is plugged in and not used by another program"
            )
        count, last = 0, time.monotonic()
        while time.monotonic() - last < timeout_s:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                time.sleep(0.05)
                continue
            yield Frame(f"camera{index}_{count:06d}", to_rgb8(bgr, "bgr"))
            count, last = count + 1, time.monotonic()
    finally:
        cap.release()


def ros_image_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` or ``CompressedImage`` (rosbags or rclpy message) -> uint8 RGB."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return decode_image(bytes(np.asarray(msg.data, dtype=np.uint8)))
    return image_message_to_rgb(msg)


def iter_bag(path: Path, topic: str | None = None) -> Iterator[Frame]:
    try:
        from rosbags.highlevel import AnyReader
    except ImportError as e:
        raise missing_extra("rosbags", "calibration") from e

    try:
        reader = AnyReader([path])
        reader.open()
    except Exception as e:  # rosbags raises its own error types per storage plugin
        raise CalibrationError(f"cannot open ROS 2 bag {path}: {e}") from e
    try:
        connections = [c for c in reader.connections if c.msgtype in IMAGE_MSGTYPES]
        if topic is not None:
            connections = [c for c in connections if c.topic in (topic, "/" + topic.lstrip("/"))]
        if not connections:
            topics = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
            raise CalibrationError(
                f"bag {path} has no image topic{f' named {topic!r}' if topic else ''}; topics: {', '.join(topics) or 'none'}"
            )
        topics = {c.topic for c in connections}
        if len(topics) > 1:
            raise CalibrationError(f"bag {path} has several image topics {sorted(topics)}; choose one with --topic")
        for index, (conn, stamp, raw) in enumerate(reader.messages(connections=connections)):
            try:
                image = ros_image_to_rgb(reader.deserialize(raw, conn.msgtype))
            except (DifferadError, ValueError, AssertionError) as e:
                raise CalibrationError(f"unreadable frame {index} (t={stamp} ns) in bag {path}: {e}") from e
            yield Frame(f"{path.stem}_{index:06d}", image)
    finally:
        reader.close()


def iter_topic(topic: str, timeout_s: float = 30.0) -> Iterator[Frame]:
    """Frames from a live ``sensor_msgs/Image`` topic (needs the ``ros`` extra); stops after ``timeout_s``
    without a new frame."""
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
    except ImportError as e:
        raise missing_extra("rclpy", "ros") from e
    if not topic:
        raise CalibrationError("ros: source needs a topic name, e.g. ros:/camera/image_raw")

    received: list[Any] = []
    context = rclpy.Context()
    rclpy.init(context=context)
    node = None
    try:
        node = rclpy.create_node("differad_calibrate_capture", context=context)
        node.create_subscription(Image, topic, received.append, qos_profile_sensor_data)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        index, last = 0, time.monotonic()
        while time.monotonic() - last < timeout_s:
            executor.spin_once(timeout_sec=0.1)
            while received:
                msg = received.pop(0)
                try:
                    image = ros_image_to_rgb(msg)
                except DifferadError as e:
                    raise CalibrationError(f"unreadable frame {index} on topic {topic}: {e}") from e
                yield Frame(f"{topic.strip('/').replace('/', '_')}_{index:06d}", image)
                index, last = index + 1, time.monotonic()
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.shutdown(context=context)
