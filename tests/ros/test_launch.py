"""``inspect.launch.py`` under a real launch service (only where ROS 2 ``launch_ros`` is installed)."""

from __future__ import annotations

import asyncio
import importlib.util
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
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import LaunchDescriptionSource
    from sensor_msgs.msg import Image

    include = IncludeLaunchDescription(
        LaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={"store": str(store.root), "product_id": "part-b", "camera_topic": "/launch_cam",
                          "engine": "golden"}.items(),
    )
    service = LaunchService()
    service.include_launch_description(LaunchDescription([include]))
    loop = asyncio.new_event_loop()
    task = loop.create_task(service.run_async())
    publisher = client.node.create_publisher(Image, "/launch_cam", 10)
    deadline = time.monotonic() + 60
    try:
        while publisher.get_subscription_count() < 1:  # the node subscribed to the remapped camera topic
            assert time.monotonic() < deadline, "the launched inspector never subscribed to /launch_cam"
            loop.run_until_complete(asyncio.sleep(0.1))
        names = client.node.get_node_names_and_namespaces()
        assert ("inspector", "/") in names
    finally:
        loop.run_until_complete(service.shutdown())
        loop.run_until_complete(task)
        loop.close()


def test_launch_file_declares_the_documented_arguments():
    from launch.actions import DeclareLaunchArgument

    names = {e.name for e in _load_description().entities if isinstance(e, DeclareLaunchArgument)}
    assert {"params_file", "camera_topic", "product_id", "engine", "model", "store", "fastdds_profile"} <= names
