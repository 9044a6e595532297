"""ROS 2 edge of DifferAD Edge: a thin node over ``differad_edge.inspector`` plus a simulated cell.

The pure pieces (``conversions``, ``params``, ``stats``, ``slot``) import no rclpy, so they are unit
tested without DDS; the nodes (``node``, ``camera_sim``, ``monitor``) and ``cell_demo`` need rclpy.
"""

from differad_edge import __version__  # released with the SDK; package.xml holds it for ament (tested equal)

__all__ = ["__version__"]
