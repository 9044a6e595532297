"""ROS 2 edge of DifferAD Edge: a thin node over ``differad_edge.inspector`` plus a simulated cell.

The pure pieces (``conversions``, ``params``, ``stats``, ``slot``) import no rclpy, so they are unit
tested without DDS; the nodes (``node``, ``camera_sim``, ``monitor``) and ``cell_demo`` need rclpy.
"""

__version__ = "0.1.0"
