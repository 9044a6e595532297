"""``inspect.launch.py`` under a real launch service (only where ROS 2 ``launch_ros`` is installed)."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.launch, pytest.mark.slow]
launch_ros = pytest.importorskip("launch_ros")  # ROS 2 installs only; PyPI's "launch" is an unrelated package

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "ros2_ws/src/differad_edge/launch/inspect.launch.py"


def _load_description():
    spec = importlib.util.spec_from_file_location("inspect_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_launch_file_starts_the_inspector_with_the_given_arguments(store, client):
    from differad_edge_msgs.msg import InspectionResult
    from differad_edge_ros.conversions import array_to_image
    from differad_edge_ros.scene import make_product
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={
            "store": str(store.root),
            "product_id": "part-b",
            "camera_topic": "/launch_cam",
            "engine": "golden",
            "fastdds_profile": "none",
        }.items(),
    )
    service = LaunchService()
    service.include_launch_description(LaunchDescription([include]))
    # run() in its own thread; shutdown() from this one is thread-safe (no event loop to deadlock)
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    publisher = client.node.create_publisher(Image, "/launch_cam", 10)
    results = client.inbox(InspectionResult, "/inspector/result")
    deadline = time.monotonic() + 60
    try:
        while publisher.get_subscription_count() < 1:  # active: subscribed to the remapped camera topic
            assert time.monotonic() < deadline, "the launched inspector never subscribed to /launch_cam"
            time.sleep(0.1)
        while ("inspector", "/") not in client.node.get_node_names_and_namespaces():  # discovery settles
            assert time.monotonic() < deadline, "the launched inspector is not in the graph"
            time.sleep(0.1)
        h = Header(frame_id="launch")
        h.stamp.sec = 4242
        while not any(r.header.stamp.sec == 4242 for r in results.items):
            assert time.monotonic() < deadline, "the launched inspector did not answer"
            publisher.publish(array_to_image(make_product(256, 5), "rgb8", header=h))
            time.sleep(0.3)
        assert next(r for r in results.items if r.header.stamp.sec == 4242).product_id == "part-b"
    finally:
        service.shutdown()
        runner.join(30)
    assert not runner.is_alive(), "the launch service did not stop"


def test_launch_file_declares_the_documented_arguments():
    from launch.actions import DeclareLaunchArgument

    names = {e.name for e in _load_description().entities if isinstance(e, DeclareLaunchArgument)}
    assert {
        "params_file",
        "camera_topic",
        "product_id",
        "view_id",
        "engine",
        "model",
        "store",
        "autostart",
        "fastdds_profile",
    } <= names
