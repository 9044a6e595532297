"""``ros2 launch differad_edge inspect.launch.py [params_file:=...] [camera_topic:=...] [product_id:=...]
[engine:=...] [model:=...] [store:=...]``: the inspector node with the shared-memory Fast DDS profile.

Launch arguments left empty keep the value of ``params_file``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

OVERRIDES = ("camera_topic", "product_id", "engine", "model", "store")


def _inspector(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDES}
    overrides = {"image_topic" if k == "camera_topic" else k: v for k, v in values.items() if v}
    return [
        Node(
            package="differad_edge",
            executable="inspector",
            name="inspector",
            parameters=[LaunchConfiguration("params_file"), overrides],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("differad_edge")
    profile = LaunchConfiguration("fastdds_profile")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "inspect.yaml"]),
                              description="YAML with /**: ros__parameters for the inspector"),
        DeclareLaunchArgument("camera_topic", default_value="", description="camera topic (image_topic)"),
        DeclareLaunchArgument("product_id", default_value="", description="product to inspect"),
        DeclareLaunchArgument("engine", default_value="", description="golden | vlm | onnx"),
        DeclareLaunchArgument("model", default_value="", description="model folder (vlm) or bundle (onnx)"),
        DeclareLaunchArgument("store", default_value="", description="reference store folder"),
        DeclareLaunchArgument("fastdds_profile",
                              default_value=PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
                              description="Fast DDS profile (large SHM segment); empty: keep the environment's"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile,
                               condition=IfCondition(PythonExpression(["'", profile, "' != ''"]))),
        OpaqueFunction(function=_inspector),
    ])
