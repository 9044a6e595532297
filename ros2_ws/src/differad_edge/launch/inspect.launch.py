"""``ros2 launch differad_edge inspect.launch.py [params_file:=...] [camera_topic:=...] [product_id:=...]
[view_id:=...] [engine:=...] [model:=...] [store:=...] [autostart:=true|false] [fastdds_profile:=PATH|none]``

The inspector lifecycle node with the shared-memory Fast DDS profile. Launch arguments left empty
keep the value of ``params_file``. ``autostart:=true`` (default): the node configures and activates
itself; ``false``: it waits in ``unconfigured`` for a lifecycle manager (``ros2 lifecycle set``).
``fastdds_profile:=none`` keeps the environment's ``FASTDDS_DEFAULT_PROFILES_FILE``; a path that
does not exist stops the launch with an error instead of running without it.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

#: launch argument -> node parameter; ids and paths stay strings (YAML would read 0123 as 83).
OVERRIDES = {
    "camera_topic": "image_topic",
    "product_id": "product_id",
    "view_id": "view_id",
    "engine": "engine",
    "model": "model",
    "store": "store",
}


def _profile(context, *args, **kwargs):
    value = LaunchConfiguration("fastdds_profile").perform(context).strip()
    if value.lower() in ("", "none", "''", '""'):
        return []  # keep the environment's profile (or Fast DDS defaults)
    if not os.path.isfile(value):
        raise RuntimeError(
            f"fastdds_profile:={value!r} does not exist; give a Fast DDS XML profile, or "
            "fastdds_profile:=none to keep the environment's"
        )
    return [SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", value)]


def _inspector(context, *args, **kwargs):
    overrides = {}
    for arg, param in OVERRIDES.items():
        value = LaunchConfiguration(arg).perform(context)
        if value:
            overrides[param] = ParameterValue(value, value_type=str)
    autostart = LaunchConfiguration("autostart").perform(context).strip().lower()
    if autostart not in ("true", "false"):
        raise RuntimeError(f"autostart:={autostart!r}: expected true or false")
    overrides["autostart"] = autostart == "true"
    return [
        Node(
            package="differad_edge",
            executable="inspector",
            name="inspector",
            parameters=[LaunchConfiguration("params_file"), overrides],
            output="screen",
            emulate_tty=True,
            # one SIGINT from launch is a clean stop; the node ignores any repeat (exit 0)
            sigterm_timeout="10",
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("differad_edge")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([share, "config", "inspect.yaml"]),
                description="YAML with /**: ros__parameters for the inspector",
            ),
            DeclareLaunchArgument("camera_topic", default_value="", description="camera topic (image_topic)"),
            DeclareLaunchArgument("product_id", default_value="", description="product to inspect"),
            DeclareLaunchArgument("view_id", default_value="", description="view (robot pose) of the product"),
            DeclareLaunchArgument("engine", default_value="", description="golden | vlm | onnx"),
            DeclareLaunchArgument("model", default_value="", description="model folder (vlm) or bundle (onnx)"),
            DeclareLaunchArgument("store", default_value="", description="reference store folder"),
            DeclareLaunchArgument(
                "autostart", default_value="true", description="configure and activate the lifecycle node at start"
            ),
            DeclareLaunchArgument(
                "fastdds_profile",
                default_value=PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
                description="Fast DDS profile (large SHM segment); none: keep the environment's",
            ),
            OpaqueFunction(function=_profile),
            OpaqueFunction(function=_inspector),
        ]
    )
