"""``differad-camera-sim --source DIR|VIDEO``: the user's own frames, a store registered for them,
and image_transport's ``<topic>/compressed`` name for compressed frames."""

from __future__ import annotations

import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from differad_edge_ros.conversions import compressed_to_rgb
from differad_edge_ros.scene import make_product
from sensor_msgs.msg import CompressedImage, Image

from differad_edge.images import save_image
from differad_edge.store import ReferenceStore

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _sim(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "differad_edge_ros.camera_sim", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_source_folder_is_registered_and_replayed_on_the_compressed_topic(client, ros_env, tmp_path):
    src = tmp_path / "frames"
    src.mkdir()
    images = [make_product(128, seed) for seed in (1, 2)]
    for i, img in enumerate(images):
        save_image(src / f"f{i}.png", img)
    (src / "notes.txt").write_text("not an image")  # ignored
    compressed = client.inbox(CompressedImage, "/cs_cam/compressed")
    raw = client.inbox(Image, "/cs_cam")
    store = tmp_path / "store"
    proc = _sim(
        [
            "--source",
            str(src),
            "--register",
            str(store),
            "--product",
            "user-part",
            "--compressed",
            "--topic",
            "/cs_cam",
            "--frames",
            "6",
            "--rate",
            "10",
            "--wait-timeout",
            "30",
            "--reliable",
        ],
        ros_env,
    )
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert "registered user-part@v0001" in out
    assert "/cs_cam/compressed" in out
    s = ReferenceStore(store)
    assert s.active_version("user-part") == "v0001"
    assert np.array_equal(s.load("user-part").image, images[0])  # the first frame is the reference
    deadline = time.monotonic() + 10
    while len(compressed.items) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(compressed.items) >= 4
    assert not raw.items
    got = compressed_to_rgb(compressed.items[0])
    assert min(np.abs(got.astype(int) - im).mean() for im in images) < 4.0  # jpeg of one of the user's frames


def test_source_video_is_replayed_and_a_bad_source_is_one_error(client, ros_env, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    for seed in range(3):
        writer.write(cv2.cvtColor(make_product(96, seed), cv2.COLOR_RGB2BGR))
    writer.release()
    frames = client.inbox(Image, "/cs_video")
    proc = _sim(
        ["--source", str(video), "--topic", "/cs_video", "--frames", "3", "--rate", "10", "--reliable"], ros_env
    )
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    deadline = time.monotonic() + 10
    while not frames.items and time.monotonic() < deadline:
        time.sleep(0.1)
    assert frames.items
    assert (frames.items[0].width, frames.items[0].height) == (96, 96)

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _sim(["--source", str(empty), "--topic", "/cs_none"], ros_env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "differad: error:" in out
    assert "no images" in out
    assert "Traceback" not in out
