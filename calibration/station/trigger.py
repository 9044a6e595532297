"""Capture on a ROS trigger: a message on a topic (``std_msgs/Empty``, e.g. from the cell PLC
bridge when a part is seated) captures the live frame, as the *Capture this frame* button does.

rclpy is imported only when a trigger topic is configured (the ``ros`` extra)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from differad_edge.errors import CalibrationError, missing_extra


class RosTrigger:
    """Subscribes to ``topic`` in its own context and calls ``on_trigger`` for every message."""

    def __init__(self, topic: str, on_trigger: Callable[[], None]) -> None:
        try:
            import rclpy
            from rclpy.executors import SingleThreadedExecutor
            from std_msgs.msg import Empty
        except ImportError as e:
            raise missing_extra("rclpy", "ros") from e
        if not topic or not topic.startswith("/"):
            raise CalibrationError(f"trigger topic {topic!r} must be an absolute topic name, e.g. /cell/part_ready")
        self.topic = topic
        self.count = 0
        self._on_trigger = on_trigger
        self._context: Any = rclpy.Context()
        rclpy.init(context=self._context)
        self._node = rclpy.create_node("differad_station_trigger", context=self._context)
        self._node.create_subscription(Empty, topic, self._received, 10)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="station-trigger", daemon=True)
        self._thread.start()

    def _received(self, _msg: Any) -> None:
        self.count += 1
        self._on_trigger()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self._executor.spin_once(timeout_sec=0.1)

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(timeout=5)
        self._node.destroy_node()
        rclpy.shutdown(context=self._context)
