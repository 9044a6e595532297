"""Capture on a ROS trigger: std_msgs/Empty messages on the trigger topic capture live frames
(real rclpy / DDS on a private localhost-only domain)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (the ros extra)")


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    from differad_edge_ros.rosenv import cell_env

    env = cell_env(domain_id=1 + (os.getpid() + 73) % 100)
    for key in (
        "ROS_DOMAIN_ID",
        "ROS_AUTOMATIC_DISCOVERY_RANGE",
        "FASTDDS_DEFAULT_PROFILES_FILE",
        "RMW_IMPLEMENTATION",
    ):
        monkeypatch.setenv(key, env[key])


def test_trigger_messages_capture_frames(ros_domain, tmp_path: Path, capture_dir: Path) -> None:
    from differad_edge.calibration.station import LiveCapture, StationSettings
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Empty

    settings = StationSettings(store=tmp_path / "store", workdir=tmp_path / "work", trigger_topic="/cell/part_ready")
    cap = LiveCapture("pump-a", str(capture_dir), settings)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("station_test_plc", context=context)
    try:
        pub = node.create_publisher(Empty, "/cell/part_ready", 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() < 1:  # DDS discovery
            assert time.monotonic() < deadline, "the station's trigger subscription was never discovered"
            executor.spin_once(timeout_sec=0.1)
        for _ in range(3):
            pub.publish(Empty())
            time.sleep(0.3)
        while len(cap.captured) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        # a file source advances one frame per trigger: the first trigger takes the second frame
        assert [f.name for f in cap.captured] == ["f001.png", "f002.png", "f003.png"]
        assert cap.trigger.count == 3
    finally:
        cap.close()
        node.destroy_node()
        rclpy.shutdown(context=context)
